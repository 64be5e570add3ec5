"""Configuration: frozen dataclasses loaded from TOML with tomllib, validated in one pass.

Every problem becomes one located line (`config.toml:9: policy.expected_vpn[2].process: ...`)
and all of them are reported together in one `ConfigError`; `Config.lines` keeps the line of
every key so that later checks (rule ids, protocol labels) and `netwatch config show` can
name it too. Sections are parsed by the
functions in `SECTIONS`, so later sections (daemon, store, export) plug in by adding a
dataclass field to `Config` and one entry to that table. Imports only errors, paths,
tomltext and the policy types of `model` (`model/policy.py`) it builds.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from netwatch import paths, tomltext
from netwatch.errors import ConfigError, one_line
from netwatch.model import (
    Action,
    EndpointPattern,
    ExpectedVpn,
    IPNetwork,
    Policy,
    Severity,
    TunnelPolicy,
)

EXPORT_FORMATS = ("jsonl", "csv", "syslog", "ecs")
"""The alert-log formats (`export.sinks.FORMATS` has a formatter for each; a test checks)."""
FLOW_EXPORT_FORMATS = ("jsonl", "ecs")
"""The flow-log formats (`export.sinks.FLOW_FORMATS`; a test checks)."""


@dataclass(frozen=True, slots=True)
class DaemonSettings:
    """The `[daemon]` section: what `netwatch daemon` runs with when no flag says otherwise.

    A systemd unit starts the daemon without flags; an admin sets sinks, retention and the
    interval here. None means "not set" (the flag's default applies). Read at start: a change
    needs a restart (SIGHUP reloads only the policy and the rules).
    """

    interval: float | None = None
    retention_days: float | None = None
    hourly_after_days: float | None = None
    """Days after which the usage history keeps hours instead of minutes."""
    max_db_mb: int | None = None
    export_file: Path | None = None
    export_format: str | None = None
    syslog: str | None = None
    """`udp://host:port` or `tcp://host:port`."""
    metrics_port: int | None = None
    capture: bool | None = None
    containers: bool | None = None
    """List the sockets of other network namespaces (containers) too (default: yes)."""
    interface: str | None = None
    full_sample_every: float | None = None
    """Seconds between full socket samples while capture runs (0: every tick)."""
    flow_export_file: Path | None = None
    """Where flow records go for a SIEM (`export.flowlog`), rotated like `export_file`."""
    flow_export_format: str | None = None
    flow_export_every: float | None = None
    """Seconds between interim records of a conversation that goes on (0: only at its end)."""


WEBHOOK_SHAPES = ("json", "ntfy", "slack")
"""Webhook bodies: netwatch's own JSON, ntfy's (text body, Title/Priority/Tags headers),
Slack-compatible (`{"text": ...}`)."""


@dataclass(frozen=True, slots=True)
class Selection:
    """Which alerts a notification channel takes: rule-id globs and a least severity.

    None in a channel's own selection means "as `[notify]` says" (`NotifySettings.selection`).
    """

    rules: tuple[str, ...] | None = None
    """fnmatch globs on the rule id (`vpn.*`); an alert matching none is not notified."""
    min_severity: Severity | None = None


@dataclass(frozen=True, slots=True)
class DesktopSettings:
    """`[notify.desktop]`: freedesktop notifications on each logged-in user's session bus."""

    selection: Selection = field(default_factory=Selection)
    open_command: tuple[str, ...] = ()
    """argv run (no shell) when the user picks the notification's "open" action; empty: no
    action is offered. `{alert}` in an argument becomes the alert's id."""


@dataclass(frozen=True, slots=True)
class WebhookSettings:
    """`[notify.webhook]`: an HTTP POST per notification, retried with backoff."""

    url: str
    shape: str = "json"
    retries: int = 3
    """Attempts after the first one fails."""
    timeout: float = 5.0
    selection: Selection = field(default_factory=Selection)


@dataclass(frozen=True, slots=True)
class CommandSettings:
    """`[notify.command]`: an argv run (no shell) with the notification as JSON on stdin."""

    argv: tuple[str, ...]
    timeout: float = 10.0
    selection: Selection = field(default_factory=Selection)


@dataclass(frozen=True, slots=True)
class NotifySettings:
    """The `[notify]` section: which alerts tell someone, how often, and through what.

    A channel is on when its table is there. `window` and `burst` are the rate limit: each
    channel sends at most `burst` single messages per `window` seconds, and what comes
    beyond that in the window goes out as one digest when the window ends.
    """

    selection: Selection = field(
        default_factory=lambda: Selection(rules=("*",), min_severity=Severity.MEDIUM)
    )
    window: float = 60.0
    burst: int = 3
    queue: int = 1000
    """Alerts waiting per channel; beyond that they are dropped and counted."""
    desktop: DesktopSettings | None = None
    webhook: WebhookSettings | None = None
    command: CommandSettings | None = None

    @property
    def enabled(self) -> bool:
        """Whether any channel is configured."""
        return any(c is not None for c in (self.desktop, self.webhook, self.command))


@dataclass(frozen=True, slots=True)
class Config:
    """The whole configuration; `source` names the file it came from (or `defaults`)."""

    policy: Policy = field(default_factory=Policy)
    daemon: DaemonSettings = field(default_factory=DaemonSettings)
    notify: NotifySettings = field(default_factory=NotifySettings)
    source: str = "defaults"
    lines: Mapping[str, int] = field(default_factory=dict)
    """Key path (`policy.rules.vpn.unexpected`) -> the line of `source` that sets it."""

    def line(self, key: str) -> int | None:
        """The line that sets `key` (or the table that holds it), None if not from a file."""
        return tomltext.line_of(self.lines, key)

    def where(self, key: str) -> str:
        """`file:line` (or `file`) of a key, the start of its located error lines."""
        line = self.line(key)
        return self.source if line is None else f"{self.source}:{line}"


class _Errors:
    """Collects located error lines while a file is parsed."""

    def __init__(self, file: str, lines: Mapping[str, int]) -> None:
        self.file = file
        self.key_lines = lines
        self.lines: list[str] = []

    def add(self, key: str, message: str) -> None:
        line = tomltext.line_of(self.key_lines, key)
        where = self.file if line is None else f"{self.file}:{line}"
        self.lines.append(f"{where}: {one_line(key)}: {one_line(message)}")


def _strs(value: Any, key: str, errs: _Errors) -> tuple[str, ...]:
    """A string or a list of non-empty strings."""
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        errs.add(key, "must be a non-empty string or a list of them")
        return ()
    return tuple(value)


def _endpoint(raw: Any, key: str, errs: _Errors) -> EndpointPattern | None:
    if not isinstance(raw, str) or not raw:
        errs.add(key, "must be an address, a network or address:port")
        return None
    host, port = raw, None
    if raw.startswith("[") and "]:" in raw:
        host, _, port_s = raw[1:].partition("]:")
        port = _port(port_s, key, errs)
    elif raw.count(":") == 1:
        host, _, port_s = raw.partition(":")
        port = _port(port_s, key, errs)
    try:
        net = ipaddress.ip_network(host.strip("[]"), strict=False)
    except ValueError:
        errs.add(key, f"{raw!r} is not an address or network")
        return None
    return EndpointPattern(net, port)


def _port(text: str, key: str, errs: _Errors) -> int | None:
    if text.isdecimal() and 0 < int(text) <= 65535:
        return int(text)
    errs.add(key, f"{text!r} is not a port (1-65535)")
    return None


_EXPECTED_KEYS = {"name", "process", "path", "protocols", "endpoints"}


def _expected(raw: Any, key: str, errs: _Errors) -> ExpectedVpn | None:
    if not isinstance(raw, dict):
        errs.add(key, "must be a table")
        return None
    for unknown in sorted(set(raw) - _EXPECTED_KEYS):
        errs.add(f"{key}.{unknown}", f"unknown key (expected one of {sorted(_EXPECTED_KEYS)})")
    name = raw.get("name", "")
    if not isinstance(name, str):
        errs.add(f"{key}.name", "must be a string")
        name = ""
    parts = {
        k: _strs(raw[k], f"{key}.{k}", errs) for k in ("process", "path", "protocols") if k in raw
    }
    endpoints: list[EndpointPattern] = []
    if "endpoints" in raw:
        for i, e in enumerate(_strs(raw["endpoints"], f"{key}.endpoints", errs)):
            ep = _endpoint(e, f"{key}.endpoints[{i}]", errs)
            if ep is not None:
                endpoints.append(ep)
    if not (set(raw) & {"process", "path", "protocols", "endpoints"}):
        errs.add(key, "needs at least one of process, path, protocols, endpoints")
        return None
    return ExpectedVpn(
        name=name or ", ".join(parts.get("process", ()) or parts.get("protocols", ())),
        process=tuple(p.lower() for p in parts.get("process", ())),
        path=parts.get("path", ()),
        protocols=tuple(p.lower() for p in parts.get("protocols", ())),
        endpoints=tuple(endpoints),
    )


_POLICY_KEYS = {"expected_vpn", "rules", "trusted_networks", "home_country", "tunnel"}
_TUNNEL_KEYS = {"required", "interfaces", "allowed_networks"}


def _section(raw: Any, name: str, keys: set[str], errs: _Errors) -> bool:
    """Whether `raw` is a table; each key it has beyond `keys` is a located error."""
    if not isinstance(raw, dict):
        errs.add(name, "must be a table")
        return False
    for unknown in sorted(set(raw) - keys):
        errs.add(f"{name}.{unknown}", f"unknown key (expected one of {sorted(keys)})")
    return True


def parse_policy(raw: Any, errs: _Errors) -> Policy:
    """Parse the `[policy]` section."""
    if not _section(raw, "policy", _POLICY_KEYS, errs):
        return Policy()
    expected: list[ExpectedVpn] = []
    items = raw.get("expected_vpn", [])
    if not isinstance(items, list):
        errs.add("policy.expected_vpn", "must be an array of tables ([[policy.expected_vpn]])")
        items = []
    for i, item in enumerate(items):
        e = _expected(item, f"policy.expected_vpn[{i}]", errs)
        if e is not None:
            expected.append(e)
    rules: list[tuple[str, Action]] = []
    rule_table = raw.get("rules", {})
    if not isinstance(rule_table, dict):
        errs.add("policy.rules", "must be a table of rule id = action")
        rule_table = {}
    for rid, act in rule_table.items():
        try:
            rules.append((rid, Action(act)))
        except ValueError:
            errs.add(f"policy.rules.{rid}", f"{act!r} is not one of alert, log, ignore")
    nets = _networks(raw.get("trusted_networks", []) or [], "policy.trusted_networks", errs)
    home = raw.get("home_country")
    if home is not None and not (isinstance(home, str) and len(home) == 2 and home.isalpha()):
        errs.add("policy.home_country", f"{home!r} is not a two-letter country code")
        home = None
    return Policy(
        expected_vpn=tuple(expected),
        rules=tuple(rules),
        trusted_networks=tuple(nets),
        home_country=home.upper() if isinstance(home, str) else None,
        tunnel=_tunnel(raw["tunnel"], errs) if "tunnel" in raw else None,
    )


def _networks(value: Any, key: str, errs: _Errors) -> tuple[IPNetwork, ...]:
    """A network (`192.168.1.0/24`, or one address) or a list of them."""
    nets: list[IPNetwork] = []
    for i, n in enumerate(_strs(value, key, errs)):
        try:
            nets.append(ipaddress.ip_network(n, strict=False))
        except ValueError:
            errs.add(f"{key}[{i}]", f"{n!r} is not a network")
    return tuple(nets)


def _tunnel(raw: Any, errs: _Errors) -> TunnelPolicy | None:
    """Parse `[policy.tunnel]`; None when it is not a table."""
    if not _section(raw, "policy.tunnel", _TUNNEL_KEYS, errs):
        return None
    default = TunnelPolicy()
    required = raw.get("required", default.required)
    if not isinstance(required, bool):
        errs.add("policy.tunnel.required", f"{required!r} is not true or false")
        required = default.required
    interfaces = default.interfaces
    if "interfaces" in raw:
        interfaces = _strs(raw["interfaces"], "policy.tunnel.interfaces", errs) or interfaces
    allowed = _networks(raw.get("allowed_networks", []), "policy.tunnel.allowed_networks", errs)
    return TunnelPolicy(required=required, interfaces=interfaces, allowed_networks=allowed)


def _number(
    raw: Any, key: str, errs: _Errors, low: float, high: float, *, low_too: bool = False
) -> float | None:
    """A number above `low` (or from it, with `low_too`) and at most `high`."""
    number = not isinstance(raw, bool) and isinstance(raw, int | float)
    if not number or not (low <= raw if low_too else low < raw) or not raw <= high:
        span = f"from {low:g} to" if low_too else f"above {low:g} and at most"
        errs.add(key, f"{raw!r} must be a number {span} {high:g}")
        return None
    return float(raw)


def _whole(raw: Any, key: str, errs: _Errors, high: int) -> int | None:
    if isinstance(raw, bool) or not isinstance(raw, int) or not 0 < raw <= high:
        errs.add(key, f"{raw!r} must be a whole number from 1 to {high}")
        return None
    return raw


def split_syslog_url(text: str) -> tuple[str, str, str] | None:
    """(protocol, host, port digits) of `udp://host:port` or `tcp://host:port`, else None.

    The one reading of a syslog address, for the config file and the `--syslog` flag alike;
    the port's range is each caller's check (they word their errors differently).
    """
    proto, sep, rest = text.partition("://")
    host, _, port = rest.rpartition(":")
    if not sep or proto not in ("udp", "tcp") or not host or not port.isdecimal():
        return None
    return proto, host, port


def _syslog_url(raw: Any, key: str, errs: _Errors) -> str | None:
    """`udp://host:port` or `tcp://host:port`, checked here so a typo fails at start."""
    parts = split_syslog_url(raw) if isinstance(raw, str) else None
    if parts is None:
        errs.add(key, f"{raw!r} is not udp://HOST:PORT or tcp://HOST:PORT")
        return None
    if _port(parts[2], key, errs) is None:
        return None
    return str(raw)


_DAEMON_KEYS = {f.name for f in fields(DaemonSettings)}


def parse_daemon(raw: Any, errs: _Errors) -> DaemonSettings:
    """Parse the `[daemon]` table; unknown keys and bad values are located errors."""
    if not _section(raw, "daemon", _DAEMON_KEYS, errs):
        return DaemonSettings()
    out: dict[str, Any] = {}
    checks: dict[str, Callable[[Any, str], Any]] = {
        "interval": lambda v, k: _number(v, k, errs, 0, 3600),
        "retention_days": lambda v, k: _number(v, k, errs, 0, 36500),
        "hourly_after_days": lambda v, k: _number(v, k, errs, 0, 36500),
        "max_db_mb": lambda v, k: _whole(v, k, errs, 1 << 20),
        "metrics_port": lambda v, k: _whole(v, k, errs, 65535),
        "syslog": lambda v, k: _syslog_url(v, k, errs),
        "export_format": lambda v, k: _choice(v, k, errs, EXPORT_FORMATS),
        "export_file": lambda v, k: Path(v) if _text(v, k, errs) else None,
        "interface": lambda v, k: v if _text(v, k, errs) else None,
        "capture": lambda v, k: _flag(v, k, errs),
        "containers": lambda v, k: _flag(v, k, errs),
        "full_sample_every": lambda v, k: _number(v, k, errs, 0, 3600, low_too=True),
        "flow_export_file": lambda v, k: Path(v) if _text(v, k, errs) else None,
        "flow_export_format": lambda v, k: _choice(v, k, errs, FLOW_EXPORT_FORMATS),
        "flow_export_every": lambda v, k: _number(v, k, errs, 0, 86400, low_too=True),
    }
    for name, check in checks.items():
        if name in raw:
            out[name] = check(raw[name], f"daemon.{name}")
    return DaemonSettings(**out)


def _choice(raw: Any, key: str, errs: _Errors, choices: tuple[str, ...]) -> str | None:
    if raw not in choices:
        errs.add(key, f"{raw!r} is not one of {', '.join(choices)}")
        return None
    return str(raw)


def _text(raw: Any, key: str, errs: _Errors) -> bool:
    if not isinstance(raw, str) or not raw:
        errs.add(key, "must be a non-empty string")
        return False
    return True


def _flag(raw: Any, key: str, errs: _Errors) -> bool | None:
    if not isinstance(raw, bool):
        errs.add(key, f"{raw!r} must be true or false")
        return None
    return raw


_SELECTION_KEYS = {"rules", "min_severity"}
_NOTIFY_KEYS = _SELECTION_KEYS | {"window", "burst", "queue", "desktop", "webhook", "command"}
_CHANNEL_KEYS = {
    "desktop": _SELECTION_KEYS | {"open_command"},
    "webhook": _SELECTION_KEYS | {"url", "shape", "retries", "timeout"},
    "command": _SELECTION_KEYS | {"argv", "timeout"},
}
SEVERITIES = tuple(s.value for s in Severity)


def _selection(raw: Mapping[str, Any], name: str, errs: _Errors) -> Selection:
    rules = _strs(raw["rules"], f"{name}.rules", errs) or None if "rules" in raw else None
    severity = None
    if "min_severity" in raw:
        chosen = _choice(raw["min_severity"], f"{name}.min_severity", errs, SEVERITIES)
        severity = Severity(chosen) if chosen is not None else None
    return Selection(rules=rules, min_severity=severity)


def _argv(raw: Any, key: str, errs: _Errors) -> tuple[str, ...]:
    """A non-empty list of strings, run without a shell (a lone string would be one word)."""
    if not isinstance(raw, list) or not raw or not all(isinstance(v, str) and v for v in raw):
        errs.add(key, "must be a non-empty list of strings (the program, then its arguments)")
        return ()
    return tuple(raw)


def _url(raw: Any, key: str, errs: _Errors) -> str | None:
    """An http or https URL with a host; the message never repeats it (it may hold a secret)."""
    from urllib.parse import urlsplit

    ok = isinstance(raw, str) and raw.isprintable() and " " not in raw
    try:
        parts = urlsplit(raw) if ok else None
        port_ok = parts is not None and (parts.port is None or parts.port > 0)
    except ValueError:
        parts, port_ok = None, False
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname or not port_ok:
        errs.add(key, "must be an http:// or https:// URL with a host (value not shown)")
        return None
    return str(raw)


def _notify_channel(raw: Any, kind: str, errs: _Errors) -> Any:
    name = f"notify.{kind}"
    if not _section(raw, name, _CHANNEL_KEYS[kind], errs):
        return None
    sel = _selection(raw, name, errs)
    if kind == "desktop":
        cmd = (
            _argv(raw["open_command"], f"{name}.open_command", errs)
            if "open_command" in raw
            else ()
        )
        return DesktopSettings(selection=sel, open_command=cmd)
    timeout = None
    if "timeout" in raw:
        timeout = _number(raw["timeout"], f"{name}.timeout", errs, 0, 600)
    if kind == "command":
        if "argv" not in raw:
            errs.add(name, "needs argv (the program to run, then its arguments)")
            return None
        argv = _argv(raw["argv"], f"{name}.argv", errs)
        if not argv:
            return None
        return CommandSettings(argv=argv, timeout=timeout or 10.0, selection=sel)
    if "url" not in raw:
        errs.add(name, "needs url")
        return None
    url = _url(raw["url"], f"{name}.url", errs)
    shape = _choice(raw.get("shape", "json"), f"{name}.shape", errs, WEBHOOK_SHAPES)
    retries = 3
    if "retries" in raw:
        r = raw["retries"]
        if isinstance(r, bool) or not isinstance(r, int) or not 0 <= r <= 20:
            errs.add(f"{name}.retries", f"{r!r} must be a whole number from 0 to 20")
        else:
            retries = r
    if url is None or shape is None:
        return None
    return WebhookSettings(
        url=url, shape=shape, retries=retries, timeout=timeout or 5.0, selection=sel
    )


def parse_notify(raw: Any, errs: _Errors) -> NotifySettings:
    """Parse the `[notify]` table: selection, rate limit, and one table per channel."""
    if not _section(raw, "notify", _NOTIFY_KEYS, errs):
        return NotifySettings()
    default = NotifySettings()
    sel = _selection(raw, "notify", errs)
    selection = Selection(
        rules=sel.rules or default.selection.rules,
        min_severity=sel.min_severity or default.selection.min_severity,
    )
    window = _number(raw["window"], "notify.window", errs, 0, 86400) if "window" in raw else None
    burst = _whole(raw["burst"], "notify.burst", errs, 1000) if "burst" in raw else None
    size = _whole(raw["queue"], "notify.queue", errs, 1_000_000) if "queue" in raw else None
    channels = {k: _notify_channel(raw[k], k, errs) for k in _CHANNEL_KEYS if k in raw}
    return NotifySettings(
        selection=selection,
        window=window or default.window,
        burst=burst or default.burst,
        queue=size or default.queue,
        **channels,
    )


SECTIONS: Mapping[str, Callable[[Any, _Errors], Any]] = {
    "policy": parse_policy,
    "daemon": parse_daemon,
    "notify": parse_notify,
}
"""Top-level section name -> parser; the `Config` field has the same name."""


def parse_config(
    data: Mapping[str, Any], file: str = "config.toml", lines: Mapping[str, int] | None = None
) -> Config:
    """Build a `Config` from parsed TOML, raising one `ConfigError` listing every problem.

    `lines` (from `tomltext.key_lines`) puts the line of each key into the error lines.
    """
    errs = _Errors(file, lines or {})
    values: dict[str, Any] = {}
    for name, raw in data.items():
        parser = SECTIONS.get(name)
        if parser is None:
            errs.add(name, f"unknown section (expected one of {sorted(SECTIONS)})")
            continue
        values[name] = parser(raw, errs)
    if errs.lines:
        # cli.main prefixes only the first line; the others get the same prefix here.
        raise ConfigError("\nnetwatch: ".join(errs.lines))
    return Config(source=file, lines=dict(lines or {}), **values)


def config_files(path: Path | None = None, *, system: bool = False) -> list[Path]:
    """The files `load_config` tries, in order; the first that exists is read.

    `path`, else `$NETWATCH_CONFIG`, else the user's file then the system's. With `system`
    (the daemon, which systemd starts as root) only `path` or `/etc/netwatch/config.toml`:
    root's personal file or environment must not override what the admin set for the
    service.
    """
    if path is not None:
        return [path]
    if system:
        return [paths.system_config_file()]
    env = os.environ.get("NETWATCH_CONFIG")
    if env:
        return [Path(env)]
    return [paths.config_dir() / "config.toml", paths.system_config_file()]


def load_config(path: Path | None = None, *, system: bool = False) -> Config:
    """Load the first of `config_files(path, system=system)` that exists, else defaults.

    A missing explicitly named file is an error; missing discovered files mean defaults.
    """
    explicit = path is not None or (not system and bool(os.environ.get("NETWATCH_CONFIG")))
    for candidate in config_files(path, system=system):
        if not _is_file(candidate):
            if explicit:
                raise ConfigError(f"{candidate}: no such config file")
            continue
        try:
            text = candidate.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{candidate}: cannot read: {exc}") from None
        return config_from_text(text, str(candidate))
    return Config()


def config_from_text(text: str, source: str) -> Config:
    """Parse the text of config file `source` (read elsewhere: the daemon's analyzer has its
    collector read the file, which its own user may not)."""
    try:
        data = tomltext.parse(text)
    except tomltext.TomlTextError as exc:
        where = source if exc.line is None else f"{source}:{exc.line}"
        raise ConfigError(f"{where}: {exc.message}") from None
    return parse_config(data, source, tomltext.key_lines(text))


def _is_file(path: Path) -> bool:
    """Whether `path` is a file we can see; a folder we may not enter hides it (no error).

    An unprivileged dashboard must still start when, say, HOME belongs to another user.
    """
    try:
        return path.is_file()
    except OSError:
        return False
