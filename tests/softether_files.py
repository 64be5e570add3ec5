"""SoftEther config files as Debian's packages write them, for `netwatch check` tests.

The server file is the one `tests/unit/test_detect_hostfacts.py` records; the client file is
the shape `vpnclient` saves after `vpncmd /CLIENT AccountCreate` (trimmed to what matters).
"""

from __future__ import annotations

from tests.unit.test_detect_hostfacts import SERVER_CONFIG

__all__ = ["SERVER_CONFIG", "client_config"]


def _account(index: int, name: str, host: str, hub: str, startup: bool, retries: int) -> str:
    return f"""\t\tdeclare Account{index}
\t\t{{
\t\t\tbool CheckServerCert false
\t\t\tuint64 CreateDateTime 1700000000000
\t\t\tbool StartupAccount {str(startup).lower()}

\t\t\tdeclare ClientAuth
\t\t\t{{
\t\t\t\tuint AuthType 1
\t\t\t\tstring Username vpn
\t\t\t}}
\t\t\tdeclare ClientOption
\t\t\t{{
\t\t\t\tstring AccountName {name}
\t\t\t\tstring DeviceName VPN
\t\t\t\tstring Hostname {host}
\t\t\t\tstring HubName {hub}
\t\t\t\tuint MaxConnection 1
\t\t\t\tuint NumRetry {retries}
\t\t\t\tuint Port 443
\t\t\t\tuint RetryInterval 15
\t\t\t\tbool UseEncrypt true
\t\t\t}}
\t\t}}
"""


def client_config(*accounts: tuple[str, str, str, bool, int]) -> str:
    """A `vpn_client.config` with accounts (name, host, hub, startup, NumRetry)."""
    body = "".join(_account(i, *a) for i, a in enumerate(accounts))
    return f"""\ufeff# Software Configuration File
# ---------------------------
declare root
{{
\tuint ConfigRevision 2
\tbool DontSavePassword false
\tdeclare AccountDatabase
\t{{
{body}\t}}
\tdeclare Config
\t{{
\t\tbool AllowRemoteConfig false
\t\tuint64 AutoDeleteCheckDiskFreeSpaceMin 104857600
\t}}
}}
"""
