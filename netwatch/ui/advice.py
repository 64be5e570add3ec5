"""What to do about an alert, in words a user can act on; keyed by rule id and labels.

Pure text. The VPN Gate relay advice follows SoftEther's own notice (WARNING.TXT section 5):
the "VPN Gate Service" is off by default and is switched off where it was switched on; when it
is off, SoftEther removes the `VPNGATE` virtual hub.
"""

from __future__ import annotations

from netwatch.model import Alert

RELAY_OFF = (
    "This computer appears to serve as a VPN Gate relay: strangers' traffic leaves the "
    "internet from your address.",
    "Turn relay mode off:",
    "  * SoftEther VPN Client Manager (vpncmgr): menu Tools > 'VPN Gate Service' "
    "(Relay Service Settings) > disable the 'VPN Gate Academic Experiment Service'.",
    "  * SoftEther VPN Server Manager (vpnsmgr): 'VPN Gate Service' button > disable; "
    "the VPNGATE virtual hub is removed when the service is off.",
    "  * Command line: stop the service (`systemctl stop softether-vpnserver`, or "
    "`vpnserver stop` / `vpnclient stop`) and check that the VPNGATE hub is gone "
    "(`vpncmd localhost /SERVER /CMD HubList`).",
    "  * Check the router: remove UPnP port mappings the relay opened, or disable UPnP.",
    "If you did not install SoftEther on purpose, uninstall it.",
)

LIST_FETCH = (
    "A program fetched the VPN Gate relay list. On its own this is a client looking for "
    "VPN servers (for example the SoftEther VPN Gate client plug-in).",
    "If you did not expect it, find the program (see Process above) and uninstall it, or "
    "disable its VPN Gate plug-in.",
)

VPN_CLIENT = (
    "A VPN or relay connection is open. If you expect this program to use a VPN, add it to "
    "the expected VPN processes in the config (detect.expected_vpn) to silence the alert.",
    "If not, stop the process and look at how it was installed (exe path, parent process).",
)

ANON = (
    "Anonymizer traffic (for example Tor). If you did not start it, stop the process and "
    "check its parent process and executable path.",
)

GENERIC = (
    "Look at the process (executable, command line, parent) and the remote owner. If the "
    "traffic is expected, tell netwatch so in the policy (detect.expected_vpn or the rule's "
    "action) to silence it.",
)


def advice_for(alert: Alert) -> tuple[str, ...]:
    """The lines of advice for an alert, most specific first."""
    rule = alert.rule_id.lower()
    tags = {t.lower() for t in alert.tags}
    if "relay" in rule or "relay" in tags:
        return RELAY_OFF
    if "list" in rule and "vpngate" in rule:
        return LIST_FETCH
    if rule.startswith("anon") or "tor" in tags or "anonymizer" in tags:
        return ANON
    if rule.startswith(("vpn", "vpngate", "softether")) or "vpn" in tags:
        return VPN_CLIENT
    return GENERIC
