"""`snapshot --geoip-db` fills each flow's remote from the explicit file (loopback mapped)."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

from tests.mmdb import write_mmdb
from tests.records import snapshot


def test_snapshot_uses_the_explicit_geoip_db(netwatch_cmd: list[str], tmp_path: Path) -> None:
    db = write_mmdb(tmp_path / "lab.mmdb", {"127.0.0.0/8": ("JP", 64500, "Loopback Lab")})
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        with socket.create_connection(("127.0.0.1", port), timeout=5) as client:
            peer, _ = server.accept()
            with peer:
                flows = snapshot(netwatch_cmd, "--geoip-db", str(db)).flows
            local_port = client.getsockname()[1]
    flows = [f for f in flows if not f.get("container")]  # other labs' namespaces
    mine = [f for f in flows if f["sport"] == local_port and f["dport"] == port]
    assert mine, flows[:20]
    remote = mine[0]["remote"]
    assert (remote["scope"], remote["country"], remote["asn"]) == ("loopback", "JP", 64500)
    assert remote["sources"][0]["file"] == str(db)
    listening = [f for f in flows if f["sport"] == port and f["direction"] == "listen"]
    assert listening and listening[0]["remote"] is None


def test_snapshot_with_a_corrupt_geoip_db_is_one_line(
    netwatch_cmd: list[str], tmp_path: Path
) -> None:
    bad = tmp_path / "bad.mmdb"
    bad.write_bytes(b"\x00" * 100)
    res = subprocess.run(
        [*netwatch_cmd, "snapshot", "--geoip-db", str(bad)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 1
    (line,) = res.stderr.splitlines()
    assert str(bad) in line
