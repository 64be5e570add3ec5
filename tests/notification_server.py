"""A small freedesktop notification server for tests: owns org.freedesktop.Notifications on
the bus named by argv[1] and appends every Notify call to the file argv[2] as a JSON line;
argv[3], if given, is its comma-separated capabilities (default `actions,body`). It also
owns org.freedesktop.systemd1 and answers the Manager's `Environment` with a display.

It lists the `actions` capability and, for a notification that offers actions, invokes the
first one at once (signals `ActionInvoked` to the sender), as a user clicking it would.
Method names and signatures are the Desktop Notifications Specification's
(https://specifications.freedesktop.org/notification-spec/latest/protocol.html).
"""

from __future__ import annotations

import json
import sys

from jeepney import DBusAddress, HeaderFields, MessageType, new_error, new_method_return, new_signal
from jeepney.bus_messages import message_bus
from jeepney.io.blocking import open_dbus_connection

NAME = "org.freedesktop.Notifications"
PATH = "/org/freedesktop/Notifications"


def main(address: str, record: str, caps: list[str]) -> None:
    conn = open_dbus_connection(bus=address)
    reply = conn.send_and_get_reply(message_bus.RequestName(NAME, 4))  # 4: do not queue
    if reply.body != (1,):  # 1: primary owner
        raise SystemExit(f"could not own {NAME}: {reply.body}")
    # Also stands in for the user's systemd manager, whose Environment names the display.
    conn.send_and_get_reply(message_bus.RequestName("org.freedesktop.systemd1", 4))
    print("ready", flush=True)
    next_id = 0
    while True:
        msg = conn.receive()
        if msg.header.message_type is not MessageType.method_call:
            continue
        member = msg.header.fields.get(HeaderFields.member)
        if member == "GetCapabilities":
            conn.send(new_method_return(msg, "as", (caps,)))
        elif member == "Get" and msg.body == ("org.freedesktop.systemd1.Manager", "Environment"):
            env = ["DISPLAY=:7", "WAYLAND_DISPLAY=wayland-7", "LD_PRELOAD=/tmp/evil.so"]
            conn.send(new_method_return(msg, "v", (("as", env),)))
        elif member == "GetServerInformation":
            conn.send(new_method_return(msg, "ssss", ("recorder", "netwatch-tests", "1", "1.2")))
        elif member == "Notify":
            app, _replaces, icon, summary, body, actions, hints, expire = msg.body
            next_id += 1
            entry = {
                "id": next_id,
                "app": app,
                "icon": icon,
                "summary": summary,
                "body": body,
                "actions": list(actions),
                "hints": {k: v[1] for k, v in hints.items()},
                "expire": expire,
            }
            with open(record, "a", encoding="utf-8") as out:
                out.write(json.dumps(entry) + "\n")
            conn.send(new_method_return(msg, "u", (next_id,)))
            if actions:
                sig = new_signal(
                    DBusAddress(PATH, interface=NAME), "ActionInvoked", "us", (next_id, actions[0])
                )
                sig.header.fields[HeaderFields.destination] = msg.header.fields[HeaderFields.sender]
                conn.send(sig)
        else:
            conn.send(new_error(msg, "org.freedesktop.DBus.Error.UnknownMethod"))


if __name__ == "__main__":
    main(
        sys.argv[1],
        sys.argv[2],
        sys.argv[3].split(",") if len(sys.argv) > 3 else ["actions", "body"],
    )
