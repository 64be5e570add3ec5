"""Does a dead notification receiver slow the daemon's ticks? Tick times with and without.

The daemon's loop (`daemon.service.Service`, real store and socket server) is driven with a
scripted engine: each tick's snapshot carries `--alerts` new alerts (a burst that never ends,
the worst case for notifications). Three runs of `--ticks` ticks each:

* `none`: no `[notify]` channel;
* `dead`: a webhook to a socket that accepts and never answers, a webhook to a port that
  refuses, and a command that hangs (`sleep 600`), each with retries and its own queue;
* `dead, queue 10`: the same with tiny queues, so nearly every alert is dropped.

The table gives per run the median, 99th percentile and largest `tick_once` time, the mean
time `Notifications.submit` took per alert (all of a tick's notification work), the alerts
dropped, and the notes sent or failed; `none` runs again last, to show the machine's drift.
The tick itself commits alerts to the store, so its time is mostly SQLite; what matters is
the difference between the rows.

    python bench/notify.py [--ticks 300] [--alerts 5]
"""

from __future__ import annotations

import argparse
import socket
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from netwatch.clock import SystemClock  # noqa: E402  # after sys.path
from netwatch.config import NotifySettings, Selection  # noqa: E402
from netwatch.daemon.server import SnapshotServer  # noqa: E402
from netwatch.daemon.service import Service, ServiceOptions  # noqa: E402
from netwatch.model import Alert, Severity  # noqa: E402
from netwatch.notify.command import CommandChannel  # noqa: E402
from netwatch.notify.webhook import WebhookChannel  # noqa: E402
from netwatch.notify.worker import ChannelWorker, Notifications  # noqa: E402
from netwatch.store import Store  # noqa: E402
from tests.builders import T0, make_alert, make_snapshot  # noqa: E402
from tests.clock import FakeClock  # noqa: E402
from tests.daemon.test_service import ScriptedEngine  # noqa: E402


def _dead_workers(
    settings: NotifySettings, silent_port: int, refused_port: int
) -> list[ChannelWorker]:
    clock = SystemClock()
    channels = [
        WebhookChannel(f"http://127.0.0.1:{silent_port}/t", retries=3, timeout=5.0),
        WebhookChannel(f"http://127.0.0.1:{refused_port}/t", retries=3, backoff=1.0),
        CommandChannel(["sleep", "600"], timeout=600),
    ]
    return [ChannelWorker(c, Selection(), settings, clock) for c in channels]


class _Timed(Notifications):
    """Notifications that add up the time `submit` took (the part a tick spends on them)."""

    spent = 0.0
    calls = 0

    def submit(self, alert: Alert) -> None:
        start = time.perf_counter()
        super().submit(alert)
        self.spent += time.perf_counter() - start
        self.calls += 1


def run(ticks: int, alerts: int, workers: list[ChannelWorker], folder: Path) -> list[str]:
    snaps = [
        make_snapshot(
            t,
            alerts=tuple(
                make_alert(severity=Severity.HIGH, alert_id=f"t{t}a{i}", first_seen=T0 + t)
                for i in range(alerts)
            ),
        )
        for t in range(1, ticks + 1)
    ]
    notifications = _Timed(workers)
    service = Service(
        ScriptedEngine(snaps),
        None,
        Store(folder / "n.db"),
        SnapshotServer(folder / "n.sock"),
        FakeClock(),
        options=ServiceOptions(ticks=ticks),
        notifications=notifications,
    )
    times = []
    for _ in range(ticks):
        start = time.perf_counter()
        service.tick_once()
        times.append(time.perf_counter() - start)
    dropped = notifications.dropped
    sent = sum(w.sent for w in workers)
    failed = sum(w.failed for w in workers)
    for w in workers:  # do not wait for the dead ones at shutdown
        w.close(timeout=0.1)
    service.notifications = Notifications(())
    service.shutdown()
    times.sort()
    ms = [x * 1000 for x in times]
    return [
        f"{statistics.median(ms):.3f}",
        f"{ms[int(len(ms) * 0.99) - 1]:.3f}",
        f"{ms[-1]:.3f}",
        f"{notifications.spent / max(notifications.calls, 1) * 1e6:.2f}",
        str(dropped),
        f"{sent}/{failed}",
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ticks", type=int, default=300)
    ap.add_argument("--alerts", type=int, default=5, help="new alerts per tick")
    args = ap.parse_args()
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(1024)
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))  # bound, never listening: refused
    silent_port, refused_port = silent.getsockname()[1], closed.getsockname()[1]
    base = NotifySettings(window=60, burst=3)
    rows = []
    for name, workers in (
        ("none", []),
        ("dead", _dead_workers(base, silent_port, refused_port)),
        ("dead, queue 10", _dead_workers(replace(base, queue=10), silent_port, refused_port)),
        ("none (again)", []),
    ):
        with tempfile.TemporaryDirectory() as tmp:
            rows.append([name, *run(args.ticks, args.alerts, workers, Path(tmp))])
    head = ["channels", "median ms", "p99 ms", "max ms", "submit us", "dropped", "sent/failed"]
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    print(f"{args.ticks} ticks, {args.alerts} new high alerts per tick")
    for r in [head, *rows]:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)))


if __name__ == "__main__":
    main()
