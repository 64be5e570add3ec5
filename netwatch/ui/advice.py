"""What to do about an alert, in words a user can act on; keyed by rule id and labels.

Pure text; the config snippets it shows name the alert's process or rule and are loaded by a
test (tests/unit/test_config_snippets.py). The VPN Gate relay advice follows SoftEther's own
notice (WARNING.TXT section 5): the "VPN Gate Service" is off by default and is switched off
where it was switched on; when it is off, SoftEther removes the `VPNGATE` virtual hub.
"""

from __future__ import annotations

import json

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

SNIPPET_INDENT = "    "
"""Lines of advice that start with this are a config snippet to paste into config.toml (a
test loads every snippet the advice can show)."""

VPN_CLIENT = (
    "A VPN or relay connection is open. If you expect this program to use a VPN, list it in "
    "the config file (`netwatch config show` names the file) to silence the alert:",
)

VPN_CLIENT_AFTER = (
    "If not, stop the process and look at how it was installed (exe path, parent process).",
)

ANON = (
    "Anonymizer traffic (for example Tor). If you did not start it, stop the process and "
    "check its parent process and executable path.",
)

GENERIC = (
    "Look at the process (executable, command line, parent) and the remote owner. If the "
    "traffic is expected, tell netwatch so in the config file (`netwatch config show` names "
    "it): set the rule's action to log or ignore, or list expected VPN software under "
    "[[policy.expected_vpn]]:",
)


def _toml_string(text: str) -> str:
    """`text` as a TOML basic string (JSON's escapes are TOML's, except for DEL).

    Process names may hold undecodable bytes (lone surrogates); they become `?`.
    """
    text = text.encode("utf-8", "replace").decode("utf-8")
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")


def expected_vpn_snippet(alert: Alert) -> tuple[str, ...]:
    """`[[policy.expected_vpn]]` naming the alert's process, ready to paste."""
    name = alert.process.name if alert.process is not None and alert.process.name else "openvpn"
    return (
        f"{SNIPPET_INDENT}[[policy.expected_vpn]]",
        f"{SNIPPET_INDENT}process = [{_toml_string(name)}]",
    )


def rule_action_snippet(alert: Alert) -> tuple[str, ...]:
    """`[policy.rules]` setting the alert's rule to `log`, ready to paste."""
    return (
        f"{SNIPPET_INDENT}[policy.rules]",
        f'{SNIPPET_INDENT}{_toml_string(alert.rule_id)} = "log"',
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
        return (*VPN_CLIENT, *expected_vpn_snippet(alert), *VPN_CLIENT_AFTER)
    return (*GENERIC, *rule_action_snippet(alert))
