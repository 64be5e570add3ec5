"""The real `netwatch` in a real terminal (tmux): replay, live, unprivileged, and `q`.

Each test starts its own tmux server (`-L`, so it never touches anyone's sessions) with a
120x40 window running a plain shell, types the command, reads the screen with
`capture-pane`, presses `q` and checks that the shell is back (the alternate screen was left
and the exit status is 0). Traffic is one loopback TCP connection held by a copy of the
Python interpreter named `nwui-probe`, bounded in time and killed at the end.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import nobody
from tests.conftest import requires_root, requires_tools
from tests.tui.helpers import DATA

pytestmark = [pytest.mark.tui, requires_tools("tmux")]

PROMPT = "nwshell$ "

PROBE = """
import socket, sys, time
srv = socket.socket(); srv.bind(("127.0.0.1", 0)); srv.listen(1)
cli = socket.create_connection(srv.getsockname()); peer, _ = srv.accept()
print(srv.getsockname()[1], flush=True)
deadline = time.monotonic() + 90
while time.monotonic() < deadline:
    cli.sendall(b"x" * 512); peer.recv(4096); time.sleep(0.2)
"""


class Terminal:
    """A private tmux server with one 120x40 pane running bash."""

    def __init__(self, tag: str, env: dict[str, str]) -> None:
        self.socket = f"nwui-{os.getpid()}-{tag}"
        self.env = env

    def tmux(self, *args: str) -> str:
        out = subprocess.run(
            ["tmux", "-L", self.socket, "-f", "/dev/null", *args],
            capture_output=True,
            text=True,
            env=self.env,
            timeout=20,
            check=True,
        )
        return out.stdout

    def start(self, cwd: Path) -> None:
        shell = (
            f"cd {shlex.quote(str(cwd))} && PS1={shlex.quote(PROMPT)} exec bash --norc --noprofile"
        )
        self.tmux("new-session", "-d", "-s", "main", "-x", "120", "-y", "40", shell)
        self.tmux("set-option", "-t", "main", "remain-on-exit", "on")
        self.wait_for(PROMPT.strip())

    def type(self, line: str) -> None:
        self.tmux("send-keys", "-t", "main", "-l", line)
        self.tmux("send-keys", "-t", "main", "Enter")

    def keys(self, *keys: str) -> None:
        self.tmux("send-keys", "-t", "main", *keys)

    def screen(self) -> str:
        return self.tmux("capture-pane", "-p", "-t", "main")

    def cursor(self) -> tuple[int, int]:
        """(column, row) of the terminal's cursor: where the focused input draws it."""
        x, y = self.tmux("display", "-p", "-t", "main", "#{cursor_x} #{cursor_y}").split()
        return int(x), int(y)

    def wait_for(self, text: str, limit: float = 30.0, *, regex: bool = False) -> str:
        deadline = time.monotonic() + limit
        screen = ""
        while time.monotonic() < deadline:
            screen = self.screen()
            if re.search(text, screen) if regex else text in screen:
                return screen
            time.sleep(0.2)
        history = self.tmux("capture-pane", "-p", "-t", "main", "-S", "-400")
        raise AssertionError(f"{text!r} not on screen after {limit}s:\n{history}")

    def kill(self) -> None:
        subprocess.run(
            ["tmux", "-L", self.socket, "kill-server"],
            capture_output=True,
            env=self.env,
            timeout=20,
            check=False,
        )


@pytest.fixture
def terminal(request: pytest.FixtureRequest, repo_root: Path) -> Iterator[Terminal]:
    env = {**os.environ, "TERM": "xterm-256color", "PYTHONPATH": str(repo_root)}
    env.pop("TMUX", None)
    term = Terminal(request.node.name[-20:].strip("[]").replace("[", "-"), env)
    term.start(repo_root)
    yield term
    term.kill()


def quit_and_check_shell(term: Terminal) -> None:
    term.keys("q")
    screen = term.wait_for(r"NW-EXIT=\d", limit=20, regex=True)
    assert "NW-EXIT=0" in screen
    assert "Quit" not in screen and "Process" not in screen  # the dashboard is gone
    assert screen.rstrip().splitlines()[-1].startswith(PROMPT.strip())


def netwatch(*args: str) -> str:
    cmd = " ".join(shlex.quote(a) for a in [sys.executable, "-m", "netwatch", *args])
    return f"{cmd}; echo NW-EXIT=$?"


def test_replay_in_a_real_terminal(terminal: Terminal) -> None:
    terminal.type(netwatch("--replay", str(DATA / "vpngate.jsonl"), "--interval", "0.2"))
    screen = terminal.wait_for("vpnclient 4242")
    assert "REPLAY" in screen
    assert "missing: packet capture" in screen  # the recording's unprivileged status
    screen = terminal.wait_for("This PC serves as a VPN Gate relay")
    assert "RU " in screen and "tls [VPNGATE]" in screen
    quit_and_check_shell(terminal)


@pytest.fixture
def probe(tmp_path: Path) -> Iterator[int]:
    exe = tmp_path / "nwui-probe"
    shutil.copy(os.path.realpath(sys.executable), exe)
    proc = subprocess.Popen([str(exe), "-c", PROBE], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline())
        yield port
    finally:
        proc.kill()
        proc.wait(timeout=10)


def find_probe_row(terminal: Terminal, port: int) -> None:
    terminal.keys("/")
    terminal.wait_for("filter: proc:NAME")  # the input has the focus before we type
    terminal.type("proc:nwui-probe")
    terminal.wait_for("filter: proc:nwui-probe")
    screen = terminal.wait_for(f"127.0.0.1:{port}")
    rows = [line for line in screen.splitlines() if "nwui-probe" in line]
    assert any(f"127.0.0.1:{port}" in line for line in rows), screen


@pytest.mark.parametrize("flags", [["--live"], []], ids=["live", "default"])
def test_live_mode_shows_a_loopback_connection_of_a_known_process(
    terminal: Terminal, probe: int, tmp_path: Path, flags: list[str]
) -> None:
    runtime = tmp_path / "run"  # no daemon socket here, so the default is to sample live
    runtime.mkdir()
    terminal.type(f"RUNTIME_DIRECTORY={runtime} " + netwatch(*flags, "--interval", "0.5"))
    terminal.wait_for("LOCAL")
    find_probe_row(terminal, probe)
    quit_and_check_shell(terminal)


@pytest.fixture
def daemon(tmp_path: Path, repo_root: Path) -> Iterator[Path]:
    runtime = tmp_path / "daemon-run"
    runtime.mkdir()
    env = {**os.environ, "RUNTIME_DIRECTORY": str(runtime), "PYTHONPATH": str(repo_root)}
    cmd = [
        sys.executable,
        "-m",
        "netwatch",
        "daemon",
        "--db",
        str(tmp_path / "nw.db"),
        "--interval",
        "0.5",
        "--no-capture",
        "--ticks",
        "240",
    ]
    proc = subprocess.Popen(cmd, cwd=repo_root, env=env, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while not (runtime / "netwatch.sock").exists():
            assert proc.poll() is None, "the daemon exited"
            assert time.monotonic() < deadline, "the daemon socket did not appear"
            time.sleep(0.1)
        yield runtime
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def test_attaches_to_a_running_daemon_by_default(
    terminal: Terminal, probe: int, daemon: Path
) -> None:
    terminal.type(f"RUNTIME_DIRECTORY={daemon} " + netwatch())
    terminal.wait_for("DAEMON")
    find_probe_row(terminal, probe)
    quit_and_check_shell(terminal)


@requires_root
@requires_tools("setpriv")
def test_unprivileged_dashboard_says_what_is_missing(terminal: Terminal, repo_root: Path) -> None:
    # netwatch and what the dashboard imports are copied where nobody can read them (the
    # checkout and venv may sit under /root); the dashboard then runs live as nobody.
    with nobody.readable_copy(repo_root, nobody.DASHBOARD_PROBE) as copy:
        python = nobody.python_for_nobody(copy, "netwatch.ui.app, textual, psutil")
        argv = nobody.as_nobody(["-m", "netwatch", "--live", "--interval", "0.5"], copy, python)
        terminal.type(f"cd {shlex.quote(str(copy))}; {shlex.join(argv)}; echo NW-EXIT=$?")
        screen = terminal.wait_for("LOCAL")
        screen = terminal.wait_for("missing:")
        assert "capture off" in screen
        assert "Traceback" not in screen
        quit_and_check_shell(terminal)


def test_check_screen_is_unavailable_in_a_replay(terminal: Terminal) -> None:
    terminal.type(netwatch("--replay", str(DATA / "vpngate.jsonl"), "--interval", "0.2"))
    terminal.wait_for("vpnclient 4242")
    terminal.keys("v")
    terminal.wait_for("The check is not available here")
    terminal.keys("Escape")
    terminal.wait_for("vpnclient 4242")
    quit_and_check_shell(terminal)


def test_check_screen_checks_this_machine_live(terminal: Terminal, tmp_path: Path) -> None:
    runtime = tmp_path / "run"  # no daemon socket: local mode, the check runs off the UI thread
    runtime.mkdir()
    terminal.type(f"RUNTIME_DIRECTORY={runtime} " + netwatch("--live", "--no-capture"))
    terminal.wait_for("LOCAL")
    terminal.keys("v")
    screen = terminal.wait_for(r"\d+ finding\(s\)|Nothing found", limit=60, regex=True)
    assert "Check: is this PC safe?" in screen and "Traceback" not in screen
    terminal.keys("Escape")
    terminal.wait_for("LOCAL")
    quit_and_check_shell(terminal)


def test_a_flow_detail_names_its_vpn_provider_in_a_real_terminal(
    terminal: Terminal, tmp_path: Path
) -> None:
    """Issue 15: the dashboard says who runs the VPN a flow goes to. The recording is written
    by the test through the stream encoder, with the provider the bundled facts file gives."""
    from dataclasses import replace

    from netwatch import codec
    from netwatch.enrich.providers import bundled
    from netwatch.stream import StreamEncoder
    from tests.builders import T0, make_flow, make_process, make_remote, make_snapshot

    vpngate = bundled().named("vpngate")
    assert vpngate is not None
    remote = replace(make_remote("203.0.113.9", country="JP"), provider=vpngate)
    flow = make_flow(remote_ip="203.0.113.9", process=make_process("vpnclient"), remote=remote)
    recording = tmp_path / "provider.jsonl"
    encoder = StreamEncoder()
    recording.write_bytes(
        b"".join(
            codec.frame(encoder.encode(make_snapshot(seq=i, flows=(flow,), taken_at=T0 + i)))
            for i in (1, 2)
        )
    )
    terminal.type(netwatch("--replay", str(recording), "--interval", "0.2"))
    terminal.wait_for("vpnclient")
    terminal.keys("Enter")
    screen = terminal.wait_for("University of Tsukuba")
    assert "Provider" in screen and "JP" in screen
    terminal.keys("Escape")
    terminal.wait_for("REPLAY")
    quit_and_check_shell(terminal)
