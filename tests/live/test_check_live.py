"""`netwatch check` against Debian's real `softether-vpnserver` in a namespace (Lab tag "chk").

While the server runs, the check (run in the namespace, so it sees the server's sockets) names
the running package and vpnserver's listening ports. A hub named VPNGATE is created with
vpncmd; `vpnserver stop` saves the config with it, and the check then reports the relay as
high and exits 4. SoftEther keeps its state in fixed paths, hence the SoftEther lock.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import requires_root, requires_tools
from tests.live.capture_lab import wait_until
from tests.locks import softether_lock
from tests.netns import Lab

pytestmark = [pytest.mark.live, requires_root, pytest.mark.timeout(150)]

REPO = Path(__file__).resolve().parents[2]
VPNSERVER = "/usr/libexec/softether/vpnserver/vpnserver"
VPNCMD = "/usr/libexec/softether/vpncmd/vpncmd"
STATE = Path("/var/lib/softether")


@pytest.fixture
def lab() -> Iterator[Lab]:
    with Lab("chk") as lab:
        yield lab


def _clean() -> None:
    for d in (STATE, Path("/run/softether")):
        shutil.rmtree(d, ignore_errors=True)


def _check(lab: Lab, tmp_path: Path) -> tuple[int, list[dict[str, Any]]]:
    argv = [sys.executable, "-m", "netwatch", "check", "--format", "jsonl",
            "--softether-dir", str(STATE), "--db", str(tmp_path / "none.db")]  # fmt: skip
    res = lab.run(lab.host, argv, timeout=60, cwd=REPO)
    assert "Traceback" not in res.stderr, res.stderr
    return res.returncode, [json.loads(line) for line in res.stdout.splitlines()]


def _listening(lab: Lab) -> bool:
    return "vpnserver" in lab.run(lab.host, ["ss", "-Hltnp", "sport = :443"]).stdout


@requires_tools(VPNSERVER, VPNCMD)
def test_check_reports_running_vpnserver_and_a_vpngate_hub(lab: Lab, tmp_path: Path) -> None:
    with softether_lock():
        _clean()
        Path("/run/softether").mkdir(parents=True)
        try:
            lab.exec_ok(lab.host, [VPNSERVER, "start"])
            wait_until(lambda: _listening(lab), 30, "vpnserver to listen on 443")
            running_code, running = _check(lab, tmp_path)
            res = lab.run(
                lab.host,
                [VPNCMD, "localhost:443", "/SERVER", "/CMD", "HubCreate", "VPNGATE",
                 "/PASSWORD:nw-test"],
                timeout=30,
            )  # fmt: skip
            assert res.returncode == 0, res.stdout[-500:] + res.stderr
            lab.exec_ok(lab.host, [VPNSERVER, "stop"])
            saved = STATE / "vpn_server.config"
            wait_until(
                lambda: saved.exists() and "declare VPNGATE" in saved.read_text(errors="replace"),
                20,
                "vpnserver to save its config with the VPNGATE hub",
            )
            code, stopped = _check(lab, tmp_path)
        finally:
            with contextlib.suppress(Exception):
                lab.run(lab.host, [VPNSERVER, "stop"], timeout=30)
            time.sleep(0.5)
            _clean()
    by_id = {f["id"]: f for f in running}
    package = by_id.get("package:softether-vpnserver")
    assert package is not None and package["severity"] == "low", running
    assert any(e.startswith("running: vpnserver (pid ") for e in package["evidence"]), package
    listen = [f for f in running if f["id"].startswith("listener:vpnserver:")]
    assert listen and "TCP 443" in listen[0]["title"], running
    assert listen[0]["severity"] == "medium"
    assert running_code in (0, 1), running  # nothing high while the config has no VPNGATE hub
    relay = [f for f in stopped if f["id"] == f"softether.vpngate_relay:{STATE}/vpn_server.config"]
    assert [f["severity"] for f in relay] == ["high"], stopped
    assert code == 4
