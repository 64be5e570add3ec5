"""The desktop channel: freedesktop notifications on each logged-in user's session bus.

The Desktop Notifications Specification's `org.freedesktop.Notifications.Notify`
(https://specifications.freedesktop.org/notification-spec/latest/), sent with jeepney, a
pure-Python D-Bus library, never by running `notify-send`. Every user with a session has a
bus socket at `/run/user/UID/bus` (systemd-logind and the dbus user unit put it there); the
note goes to each.

Who may connect: a session bus (dbus-daemon's default rules) lets in its own user and root,
and `/run/user/UID` is that user's alone (mode 0700). So a daemon running as root (one
process, `--no-privsep`) reaches every user, and a user's own daemon reaches that user; the
privilege-split daemon's analyzer runs as `netwatch` and reaches nobody, which it says once
in the log (docs/architecture.md, section 7, says what to do about it).

Where the server lists the `actions` capability and `[notify.desktop] open_command` is set,
the note carries an action "open"; when the user picks it the server signals
`ActionInvoked`, and netwatch runs `open_command` (no shell, `{alert}` replaced by the alert's
id) as the daemon's own user.
"""

from __future__ import annotations

import contextlib
import html
import logging
import os
import subprocess
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from netwatch.model import Severity
from netwatch.notify.note import Note

log = logging.getLogger("netwatch.notify")

RUN_USER = Path("/run/user")
NOTIFICATIONS = "org.freedesktop.Notifications"
NOTIFICATIONS_PATH = "/org/freedesktop/Notifications"
APP_NAME = "netwatch"
REPLY_TIMEOUT = 5.0
"""Seconds to wait for a notification server's reply (a hung desktop must not hang us)."""
OPEN_ACTION = "open"
SESSION_VARS = ("DISPLAY", "WAYLAND_DISPLAY", "XAUTHORITY")
"""What a graphical `open_command` needs from the user's session, beyond `env`."""
IDS_KEPT = 1000
"""Notification ids remembered per bus, to find the alert an action was picked on."""


def session_buses(run_user: Path = RUN_USER) -> list[str]:
    """D-Bus addresses of the session buses of logged-in users (`/run/user/UID/bus`)."""
    found: list[str] = []
    try:
        entries = sorted(run_user.iterdir())
    except OSError:
        return found
    for entry in entries:
        bus = entry / "bus"
        try:
            if entry.name.isdecimal() and bus.is_socket():
                found.append(f"unix:path={bus}")
        except OSError:  # a user's folder we may not enter: not reachable, skip it
            continue
    return found


def urgency(severity: Severity) -> int:
    """The spec's urgency hint: 0 low, 1 normal, 2 critical."""
    return 2 if severity.rank >= Severity.HIGH.rank else (1 if severity.rank >= 2 else 0)


class _Bus:
    """One open connection to a session bus, with its server's capabilities."""

    def __init__(self, address: str, on_action: Callable[[int, str], None]) -> None:
        from jeepney import DBusAddress, MatchRule, message_bus
        from jeepney.io.threading import DBusRouter, Proxy, open_dbus_connection

        self.conn = open_dbus_connection(bus=address, auth_timeout=REPLY_TIMEOUT)
        self.router = DBusRouter(self.conn)
        self.address = address
        self.target = DBusAddress(
            NOTIFICATIONS_PATH, bus_name=NOTIFICATIONS, interface=NOTIFICATIONS
        )
        try:
            rule = MatchRule(type="signal", interface=NOTIFICATIONS, path=NOTIFICATIONS_PATH)
            Proxy(message_bus, self.router, timeout=REPLY_TIMEOUT).AddMatch(rule)
            self._filter = self.router.filter(rule, queue=_ActionQueue(on_action))
            caps = self.call("GetCapabilities", "", ())
            self.capabilities = frozenset(str(c) for c in caps[0])
        except BaseException:
            self.close()
            raise

    def session_env(self) -> dict[str, str]:
        """`SESSION_VARS` from the user's systemd manager (`systemctl --user
        show-environment`), where desktops import them; {} where there is none."""
        from jeepney import DBusAddress, Properties
        from jeepney.wrappers import unwrap_msg

        manager = DBusAddress(
            "/org/freedesktop/systemd1",
            bus_name="org.freedesktop.systemd1",
            interface="org.freedesktop.systemd1.Manager",
        )
        try:
            msg = Properties(manager).get("Environment")
            ((_sig, items),) = unwrap_msg(
                self.router.send_and_get_reply(msg, timeout=REPLY_TIMEOUT)
            )
        except Exception:  # no systemd user manager on this bus: no display to name
            return {}
        found = {}
        for item in items if isinstance(items, list) else ():
            name, _, value = str(item).partition("=")
            if name in SESSION_VARS:
                found[name] = value
        return found

    def call(self, method: str, signature: str, body: tuple[Any, ...]) -> Any:
        from jeepney import new_method_call
        from jeepney.wrappers import unwrap_msg

        msg = new_method_call(self.target, method, signature, body)
        return unwrap_msg(self.router.send_and_get_reply(msg, timeout=REPLY_TIMEOUT))

    def close(self) -> None:
        self.router.close()
        self.conn.close()


class _ActionQueue:
    """Takes the router's matched signals (in its receiver thread): `ActionInvoked` (id,
    action key) and `NotificationClosed` (id, reason), the latter as action key ""."""

    def __init__(self, on_action: Callable[[int, str], None]) -> None:
        self._on_action = on_action

    def put_nowait(self, msg: Any) -> None:
        from jeepney import HeaderFields

        member = msg.header.fields.get(HeaderFields.member)
        body = msg.body
        if len(body) != 2 or not isinstance(body[0], int):
            return
        if member == "ActionInvoked" and isinstance(body[1], str):
            self._on_action(body[0], body[1])
        elif member == "NotificationClosed":
            self._on_action(body[0], "")


class DesktopChannel:
    """Sends each note to every session bus `buses()` names; keeps connections open."""

    name = "desktop"

    def __init__(
        self,
        open_command: Sequence[str] = (),
        buses: Callable[[], list[str]] = session_buses,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.open_command = list(open_command)
        self.env = None if env is None else dict(env)
        """The environment `open_command` runs in (None: this process's)."""
        self.offered = 0
        """Notifications sent with the "open" action."""
        self.answered = threading.Semaphore(0)
        """Released once for each of those the user acted on or that was closed."""
        self._buses = buses
        self._open: dict[str, _Bus] = {}
        self._ids: OrderedDict[tuple[str, int], str] = OrderedDict()
        self._session_env: dict[str, dict[str, str]] = {}
        self._early: OrderedDict[tuple[str, int], str] = OrderedDict()
        self._lock = threading.Lock()
        self._unreachable: set[str] = set()
        self._told_none = False
        self.opened: list[subprocess.Popen[bytes]] = []
        """Programs `open_command` started (reaped at close)."""

    def send(self, note: Note) -> None:
        """Notify every reachable session bus; OSError only when none took the note."""
        problems: list[str] = []
        delivered = 0
        buses = self._buses()
        if not buses and not self._told_none:
            self._told_none = True
            log.warning(
                "desktop notifications: no session bus under /run/user is reachable as uid %d "
                "(no one logged in, or this process may not enter their folders)",
                os.geteuid(),
            )
        for address in buses:
            try:
                self._notify(address, note)
            except Exception as exc:  # jeepney raises its own classes besides OSError
                self._drop(address)
                problems.append(f"{address}: {type(exc).__name__}: {exc}")
                if address not in self._unreachable:
                    self._unreachable.add(address)
                    log.warning("desktop notifications: cannot reach %s: %s", address, exc)
            else:
                delivered += 1
                self._unreachable.discard(address)
        if problems and not delivered:
            raise OSError("; ".join(problems))

    def _notify(self, address: str, note: Note) -> None:
        bus = self._open.get(address)
        if bus is None:
            bus = self._open[address] = _Bus(address, lambda i, k: self._action(address, i, k))
            if self.env is not None and self.open_command:
                # asked here, not when the action comes: that runs on the router's thread,
                # which a call would wait on
                self._session_env[address] = bus.session_env()
        actions: list[str] = []
        if self.open_command and "actions" in bus.capabilities:
            actions = [OPEN_ACTION, "Open in netwatch"]
        hints = {"urgency": ("y", urgency(note.severity)), "category": ("s", "network")}
        body = note.body if "body" in bus.capabilities else ""
        if "body-markup" in bus.capabilities:  # the server reads the body as markup
            body = html.escape(body, quote=False)
        (nid,) = bus.call(
            "Notify",
            "susssasa{sv}i",
            (APP_NAME, 0, "network-wired", note.title, body, actions, hints, -1),
        )
        key, alert = (address, int(nid)), note.alerts[0].id
        if not actions:
            return
        self.offered += 1
        with self._lock:
            self._ids[key] = alert
            while len(self._ids) > IDS_KEPT:
                self._ids.popitem(last=False)
            early = self._early.pop(key, None)
        if early is not None:  # picked before Notify's reply reached this thread
            self._run_open(address, alert, early)

    def _action(self, address: str, nid: int, key: str) -> None:
        """Run `open_command` for the alert whose notification the user acted on."""
        with self._lock:
            alert = self._ids.pop((address, nid), None)
            if alert is None:
                # The signal can overtake Notify's reply (it is read by the router's thread
                # while the sender still waits to be woken): keep it for `_notify`.
                self._early[(address, nid)] = key
                while len(self._early) > IDS_KEPT:
                    self._early.popitem(last=False)
                return
        self._run_open(address, alert, key)

    def _run_open(self, address: str, alert: str, key: str) -> None:
        self.answered.release()
        if key != OPEN_ACTION or not self.open_command:
            return
        argv = [a.replace("{alert}", alert) for a in self.open_command]
        env = None if self.env is None else {**self.env, **self._session_env.get(address, {})}
        try:
            self.opened.append(
                subprocess.Popen(  # noqa: S603  # argv from the admin's config, no shell
                    argv,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        except OSError as exc:
            log.warning("desktop notifications: open_command failed: %s", exc)

    def _drop(self, address: str) -> None:
        bus = self._open.pop(address, None)
        if bus is not None:
            # a broken connection may fail to close; it is gone either way
            with contextlib.suppress(Exception):
                bus.close()

    def close(self) -> None:
        """Close every bus connection and reap programs `open_command` started."""
        for address in list(self._open):
            self._drop(address)
        for proc in self.opened:
            proc.poll()  # reaps those that ended; the user's dashboard may stay open
        self.opened.clear()
