"""Helpers for live capture tests: watch a lab namespace with netwatch and with tcpdump.

`Watch` starts, in the lab's host namespace, netwatch's live engine with capture
(`tests.live.capture_probe`) and `tcpdump -w` recording a real capture file. On `stop()` it
returns the snapshots and the pcap; the tests then assert on both (live attribution, and
`netwatch analyze` of the recorded file). Everything runs through `Lab`, so it is killed and
removed with the lab.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tests.netns import Lab

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Watch:
    """netwatch's live probe plus tcpdump in `lab.host`, writing under `workdir`."""

    lab: Lab
    workdir: Path
    bpf: str | None = None
    interval: float = 0.3
    """Seconds between the probe's ticks (netwatch's default is 1)."""
    full_every: float = 0.0
    """Seconds between full socket samples (`Engine.full_every`; 0: every tick)."""
    interface: str | None = None
    """The one interface netwatch captures on (None: every interface)."""
    snapshots: list[dict] = field(default_factory=list)
    containers: bool = False
    """List the sockets of the lab's other namespaces too. Off by default: a lab's peers
    stand for hosts on the internet, which netwatch on a real host cannot list."""
    record: bool = True
    """Run tcpdump beside the probe (off where its packet socket must not be there: the
    AF_PACKET attribution test counts the packet sockets of the namespace)."""
    record_snaplen: int | None = None
    """tcpdump's `-s` (None: its default, 256 KiB). In immediate mode on `any` its ring has
    fixed frames of the snapshot length, so its default 2 MiB holds only 8 packets: a
    recording of a burst drops all but a few whenever tcpdump is not scheduled at once
    (measured in a lab: 8 of 4,000 copies kept with tcpdump stopped during the burst)."""
    record_buffer_kib: int | None = None
    """tcpdump's `-B`, its ring in KiB (None: its default, 2 MiB)."""
    recorder_drops: int | None = None
    """After `stop()`: the packets tcpdump said the kernel dropped (None: no such line)."""

    def __post_init__(self) -> None:
        self.snap_file = self.workdir / "snapshots.jsonl"
        self.pcap = self.workdir / "recorded.pcap"

    def start(self) -> Watch:
        argv = ["tcpdump", "-i", "any", "-U", "--immediate-mode", "-n", "-w", str(self.pcap)]
        if self.record_snaplen is not None:
            argv += ["-s", str(self.record_snaplen)]
        if self.record_buffer_kib is not None:
            argv += ["-B", str(self.record_buffer_kib)]
        self._tcpdump: subprocess.Popen[bytes] | None = None
        if self.record:
            self._tcpdump = self.lab.spawn(
                self.lab.host,
                [*argv, *([self.bpf] if self.bpf else [])],
                stderr=subprocess.PIPE,
                bufsize=0,
            )
            wait_for_line(self._tcpdump.stderr, "listening on", 20)
        probe = [sys.executable, "-m", "tests.live.capture_probe", str(self.snap_file)]
        probe += ["--interval", str(self.interval), "--full-every", str(self.full_every)]
        if self.bpf:
            probe += ["--filter", self.bpf]
        if self.interface:
            probe += ["--interface", self.interface]
        if self.containers:
            probe.append("--containers")
        self._probe = self.lab.spawn(
            self.lab.host,
            probe,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            cwd=REPO,
            bufsize=0,
        )
        wait_for_line(self._probe.stdout, "ready", 30)
        return self

    def stop(self) -> list[dict]:
        """Stop both; return the snapshots (the pcap is at `self.pcap`)."""
        assert self._probe.stdin is not None
        self._probe.stdin.write(b"stop\n")
        self._probe.stdin.flush()
        wait_for_line(self._probe.stdout, "done", 30)
        self._probe.wait(10)
        if self._tcpdump is not None:
            self._tcpdump.terminate()
            self._tcpdump.wait(10)
            assert self._tcpdump.stderr is not None
            said = self._tcpdump.stderr.read().decode(errors="replace")
            dropped = re.search(r"(\d+) packets? dropped by kernel", said)
            self.recorder_drops = int(dropped[1]) if dropped else None
        self.snapshots = [json.loads(x) for x in self.snap_file.read_text().splitlines()]
        return self.snapshots

    def flows(self, pred: Callable[[dict], bool]) -> list[dict]:
        """Every flow record, across all snapshots, that matches `pred`."""
        return [f for s in self.snapshots for f in s["flows"] if pred(f)]


def wait_for_line(stream: object, needle: str, timeout: float) -> str:
    """Read lines from a pipe until one contains `needle` (bounded by `timeout`).

    The pipe must be unbuffered (`bufsize=0`), or lines already buffered would hide from
    `select`.
    """
    import selectors

    sel = selectors.DefaultSelector()
    sel.register(stream, selectors.EVENT_READ)  # type: ignore[arg-type]
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        if not sel.select(max(0.0, deadline - time.monotonic())):
            break
        line = stream.readline()  # type: ignore[attr-defined]
        if not line:
            break
        text = line.decode(errors="replace") if isinstance(line, bytes) else line
        seen.append(text)
        if needle in text:
            return text
    raise AssertionError(f"{needle!r} not seen within {timeout} s; got: {''.join(seen)[-2000:]}")


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll `check` every 0.1 s until true, or fail naming `what`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def analyze(pcap: Path, *extra: str) -> list[dict]:
    """`netwatch analyze --format jsonl` on a recorded capture; the records."""
    res = subprocess.run(
        [sys.executable, "-m", "netwatch", "analyze", str(pcap), "--format", "jsonl", *extra],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
        check=False,
    )
    assert res.returncode == 0, res.stderr
    return [json.loads(x) for x in res.stdout.splitlines()]


def process_name(flow: dict) -> str | None:
    """The owning process's name in a flow record, if any."""
    proc = flow.get("process")
    return None if proc is None else proc["name"]


def remote_is(ip: str, port: int | None = None) -> Callable[[dict], bool]:
    """A predicate: the flow's other end (either src or dst) is ip[:port]."""

    def pred(f: dict) -> bool:
        for addr, p in ((f["src"], f["sport"]), (f["dst"], f["dport"])):
            if addr == ip and (port is None or p == port):
                return True
        return False

    return pred
