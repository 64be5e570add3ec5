"""The webhook channel against a real HTTP server on 127.0.0.1, and against dead receivers.

The server fails the first requests as told, then answers 200, and records every request;
the waits between tries are handed to a recorder instead of sleeping. Dead receivers: a
socket that accepts connections and never answers, and a port that refuses. The daemon's
side of it (`ChannelWorker.put`) must never wait for either: the queue drops, counted, and
`send` only ever runs on the worker's own thread. Timing is measured by bench/notify.py,
never asserted here.
"""

from __future__ import annotations

import base64
import json
import logging
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from netwatch.clock import SystemClock
from netwatch.config import NotifySettings, Selection
from netwatch.model import Severity
from netwatch.notify.note import digest, single
from netwatch.notify.webhook import WebhookChannel, redact
from netwatch.notify.worker import ChannelWorker, Notifications
from tests.builders import make_alert


class Receiver(ThreadingHTTPServer):
    """Fails the first `fail` requests with 503, then answers 200; records them all."""

    def __init__(self, fail: int) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.fail = fail
        self.requests: list[tuple[int, str, dict[str, str], bytes]] = []

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:  # noqa: N802  # http.server's name
        body = self.rfile.read(int(self.headers["Content-Length"]))
        code = 503 if len(self.server.requests) < self.server.fail else 200
        self.server.requests.append((code, self.path, dict(self.headers), body))
        self.send_response(code)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture
def receiver(request: pytest.FixtureRequest) -> Iterator[Receiver]:
    server = Receiver(getattr(request, "param", 2))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_two_failures_then_one_delivery(receiver: Receiver) -> None:
    waits: list[float] = []
    hook = WebhookChannel(
        receiver.base + "/hook/t0ken?key=s3cret", retries=3, backoff=0.5, sleep=waits.append
    )
    hook.send(single(make_alert(severity=Severity.HIGH)))
    assert [r[0] for r in receiver.requests] == [503, 503, 200]
    assert waits == [0.5, 1.0]  # doubling backoff between tries
    _code, path, headers, body = receiver.requests[-1]
    assert path == "/hook/t0ken?key=s3cret"
    assert headers["Content-Type"] == "application/json"
    note = json.loads(body)
    assert note["type"] == "notification" and not note["digest"]
    assert note["alerts"][0]["rule"] == "vpngate.list_fetch"  # the codec's alert record


@pytest.mark.parametrize("receiver", [99], indirect=True)
def test_giving_up_logs_only_the_redacted_url(
    receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    url = receiver.base.replace("//", "//alice:pa55@") + "/hook/t0ken?key=s3cret"
    hook = WebhookChannel(url, retries=2, backoff=0.1, sleep=lambda _s: None)
    worker = ChannelWorker(hook, Selection(), NotifySettings(), SystemClock(), start=False)
    worker.put(make_alert(severity=Severity.HIGH))
    with caplog.at_level(logging.WARNING, logger="netwatch.notify"):
        worker.drain()
    assert len(receiver.requests) == 3 and worker.failed == 1
    auth = receiver.requests[0][2]["Authorization"]
    assert base64.b64decode(auth.split()[1]) == b"alice:pa55"  # userinfo sent as Basic auth
    text = caplog.text
    assert f"webhook:http://127.0.0.1:{receiver.server_address[1]}/…" in text
    assert "HTTP 503" in text
    for secret in ("t0ken", "s3cret", "alice", "pa55"):
        assert secret not in text


def test_redact_drops_userinfo_path_and_query() -> None:
    assert redact("https://u:p@hooks.example:8443/services/T0/B0/XYZ?x=1") == (
        "https://hooks.example:8443/…"
    )
    assert redact("http://[2001:db8::1]/") == "http://[2001:db8::1]"


@pytest.mark.parametrize("receiver", [0], indirect=True)
def test_ntfy_and_slack_shapes(receiver: Receiver) -> None:
    alerts = [make_alert(severity=s, alert_id=s.value) for s in (Severity.HIGH, Severity.LOW)]
    WebhookChannel(receiver.base + "/topic", "ntfy").send(digest(alerts))
    WebhookChannel(receiver.base + "/slack", "slack").send(single(alerts[0]))
    (_c, _p, ntfy, text), (_c2, _p2, _h, slack) = receiver.requests
    assert ntfy["Title"] == "netwatch: 2 alerts"
    assert ntfy["Priority"] == "4"  # the digest's worst severity, high
    assert ntfy["Tags"] == "netwatch,high,vpngate.list_fetch"
    assert text.decode().startswith("[high] vpngate.list_fetch: ")
    assert json.loads(slack) == {
        "text": "*netwatch: vpngate.list_fetch*\nvpnclient fetched the VPN Gate relay list"
    }


def _silent_port() -> tuple[socket.socket, int]:
    """A socket that accepts connections (the kernel's backlog) and never answers."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    return sock, sock.getsockname()[1]


def _refusing_port() -> int:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port: int = sock.getsockname()[1]
    sock.close()  # bound, never listened: connections are refused
    return port


def test_dead_receivers_never_hold_up_the_submitter() -> None:
    silent, port = _silent_port()
    settings = NotifySettings(queue=2, burst=1, window=3600)
    try:
        hung = ChannelWorker(
            WebhookChannel(f"http://127.0.0.1:{port}/x", retries=0, timeout=1.0),
            Selection(),
            settings,
            SystemClock(),
        )
        refused = ChannelWorker(
            WebhookChannel(f"http://127.0.0.1:{_refusing_port()}/x", retries=1, backoff=0.01),
            Selection(),
            settings,
            SystemClock(),
        )
        notifications = Notifications([hung, refused])
        for i in range(10):
            notifications.submit(make_alert(severity=Severity.HIGH, alert_id=f"a{i}"))
        # The silent receiver holds the worker inside its first POST: at most that one and
        # the two the queue holds got in; the rest were dropped, and counted.
        assert 7 <= hung.dropped <= 8
        assert notifications.dropped >= hung.dropped
        hung.close(timeout=10)
        refused.close(timeout=10)
    finally:
        silent.close()
    assert hung.failed >= 1 and refused.failed >= 1 and hung.sent == refused.sent == 0
    main = threading.main_thread().name
    assert hung.send_threads == {"netwatch-notify-webhook"}
    assert main not in refused.send_threads
