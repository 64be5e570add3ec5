"""`netwatch geoip status|update` against a local HTTP server serving test DB-IP files."""

from __future__ import annotations

import gzip
import json
import os
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from mmdb_writer import MMDBWriter
from netaddr import IPSet

from netwatch import paths
from netwatch.enrich.update import months
from tests.mmdb import write_mmdb

THIS, PREVIOUS = months(datetime.now(UTC))


class Files(BaseHTTPRequestHandler):
    """Serves `Files.content[path]`; anything else is 404."""

    content: dict[str, bytes] = {}
    served: list[str] = []

    def do_GET(self) -> None:  # noqa: N802  # http.server's naming
        Files.served.append(self.path)
        body = Files.content.get(self.path)
        if body is None:
            self.send_response(404)
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args: Any) -> None:
        return


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, bytes]]:
    Files.content, Files.served = {}, []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Files)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    monkeypatch.setenv("NETWATCH_GEOIP_URL", f"http://127.0.0.1:{httpd.server_address[1]}/free")
    yield Files.content
    httpd.shutdown()
    httpd.server_close()


def country_gz(tmp_path: Path, one_one: str = "NZ", db_type: str = "DBIP-Country-Lite") -> bytes:
    nets = {
        "8.8.8.0/24": ("US", None, None),
        "1.1.1.0/24": (one_one, None, None),
        "2001:4860::/32": ("US", None, None),
    }
    return gzip.compress(write_mmdb(tmp_path / f"c-{one_one}.mmdb", nets, db_type).read_bytes())


def asn_gz(tmp_path: Path) -> bytes:
    nets = {
        "8.8.8.0/24": (None, 15169, "Google LLC"),
        "2001:4860::/32": (None, 15169, "Google LLC"),
    }
    db = write_mmdb(tmp_path / "a.mmdb", nets, "DBIP-ASN-Lite (compat=GeoLite2-ASN)")
    return gzip.compress(db.read_bytes())


def nw(cmd: list[str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*cmd, *args], capture_output=True, text=True, timeout=60, env=os.environ.copy()
    )


def test_update_falls_back_to_last_month_and_is_used(
    netwatch_cmd: list[str], server: dict[str, bytes], tmp_path: Path
) -> None:
    server[f"/free/dbip-country-lite-{PREVIOUS}.mmdb.gz"] = country_gz(tmp_path)
    server[f"/free/dbip-asn-lite-{THIS}.mmdb.gz"] = asn_gz(tmp_path)
    res = nw(netwatch_cmd, "geoip", "update")
    assert res.returncode == 0, res.stderr
    assert f"/free/dbip-country-lite-{THIS}.mmdb.gz" in Files.served  # tried first, 404
    dest = paths.data_dir() / "geoip"
    assert sorted(p.name for p in dest.iterdir()) == [
        "dbip-asn-lite.mmdb",
        "dbip-country-lite.mmdb",
    ]
    assert "IP geolocation by DB-IP (https://db-ip.com)" in res.stdout
    # The progress bar's last state (one line per file when stderr is not a terminal).
    assert f"dbip-country-lite-{PREVIOUS}.mmdb.gz [{'#' * 30}] 100%" in res.stderr.splitlines()
    # The updated file beats the bundled one (bundled says AU for 1.1.1.1).
    out = nw(netwatch_cmd, "lookup", "1.1.1.1", "--format", "jsonl")
    record = json.loads(out.stdout)
    assert record["country"] == "NZ" and record["asn"] == 13335  # ASN from the bundled file
    assert record["sources"][0]["file"] == str(dest / "dbip-country-lite.mmdb")
    status = nw(netwatch_cmd, "geoip", "status")
    assert status.returncode == 0
    lines = status.stdout.splitlines()
    assert (
        lines[1].split()[0] == "updated"
        and lines[-1] == "IP geolocation by DB-IP (https://db-ip.com)"
    )
    assert any("bundled" in line and "netwatch-country-asn.mmdb" in line for line in lines)


def test_second_update_keeps_the_previous_copy(
    netwatch_cmd: list[str],
    server: dict[str, bytes],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server[f"/free/dbip-country-lite-{THIS}.mmdb.gz"] = country_gz(tmp_path, "NZ")
    server[f"/free/dbip-asn-lite-{THIS}.mmdb.gz"] = asn_gz(tmp_path)
    conf = tmp_path / "GeoIP.conf"
    conf.write_text("AccountID 12345\nLicenseKey x\nEditionIDs GeoLite2-ASN\n", encoding="utf-8")
    monkeypatch.setenv("GEOIPUPDATE_CONF_FILE", str(conf))
    first = nw(netwatch_cmd, "geoip", "update")
    assert first.returncode == 0
    assert f"{conf} has a MaxMind account: run `geoipupdate`" in first.stdout
    server[f"/free/dbip-country-lite-{THIS}.mmdb.gz"] = country_gz(tmp_path, "FJ")
    res = nw(netwatch_cmd, "geoip", "update")
    assert res.returncode == 0, res.stderr
    assert "previous copy kept as dbip-country-lite.mmdb.prev" in res.stdout
    assert (paths.data_dir() / "geoip" / "dbip-country-lite.mmdb.prev").is_file()
    assert (
        json.loads(nw(netwatch_cmd, "lookup", "1.1.1.1", "--format", "jsonl").stdout)["country"]
        == "FJ"
    )


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"this is not gzip", "not a valid gzip download"),
        (gzip.compress(b"gzip, but not an mmdb" * 50), "not a valid MaxMind DB file"),
        (None, "not published"),
        ("wrong-type", "not DBIP-Country-Lite"),
        ("wrong-answer", "says"),
    ],
)
def test_bad_downloads_do_not_replace_the_installed_file(
    netwatch_cmd: list[str], server: dict[str, bytes], tmp_path: Path, body: Any, message: str
) -> None:
    server[f"/free/dbip-country-lite-{THIS}.mmdb.gz"] = country_gz(tmp_path)
    server[f"/free/dbip-asn-lite-{THIS}.mmdb.gz"] = asn_gz(tmp_path)
    assert nw(netwatch_cmd, "geoip", "update").returncode == 0
    installed = (paths.data_dir() / "geoip" / "dbip-country-lite.mmdb").read_bytes()
    del server[f"/free/dbip-country-lite-{THIS}.mmdb.gz"]
    if body == "wrong-type":
        body = country_gz(tmp_path, db_type="DBIP-City-Lite")
    elif body == "wrong-answer":
        nets = {"8.8.8.0/24": ("DE", None, None), "2001:4860::/32": ("DE", None, None)}
        body = gzip.compress(
            write_mmdb(tmp_path / "de.mmdb", nets, "DBIP-Country-Lite").read_bytes()
        )
    if body is not None:
        server[f"/free/dbip-country-lite-{THIS}.mmdb.gz"] = body
    res = nw(netwatch_cmd, "geoip", "update")
    assert res.returncode == 1
    errors = [line for line in res.stderr.splitlines() if line.startswith("netwatch:")]
    assert len(errors) == 1 and message in errors[0], res.stderr
    assert "Traceback" not in res.stderr
    dest = paths.data_dir() / "geoip"
    assert (dest / "dbip-country-lite.mmdb").read_bytes() == installed
    assert not list(dest.glob(".*.part"))


def test_unreachable_server_is_one_line(netwatch_cmd: list[str]) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    res = nw(
        netwatch_cmd, "geoip", "update", "--url", f"http://127.0.0.1:{port}/free", "--timeout", "3"
    )
    assert res.returncode == 1
    (line,) = res.stderr.splitlines()
    assert "download failed" in line


def test_status_warns_about_stale_and_broken_files(
    netwatch_cmd: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    geo = tmp_path / "GeoIP"
    geo.mkdir()
    (geo / "GeoLite2-City.mmdb").write_bytes(b"broken")
    monkeypatch.setenv("GEOIPUPDATE_DB_DIR", str(geo))
    res = nw(netwatch_cmd, "geoip", "status")
    assert res.returncode == 0, res.stderr
    assert "warning: ignored " + str(geo / "GeoLite2-City.mmdb") in res.stdout
    bundled_age = (time.time() - 1781722800) // 86400  # the bundled file's build_epoch
    warned = "warning: netwatch-country-asn.mmdb is" in res.stdout
    assert warned == (bundled_age > 120)
    if warned:
        assert "run `netwatch geoip update` for current DB-IP Lite data" in res.stdout
    old = tmp_path / "GeoIP" / "GeoLite2-Country.mmdb"
    writer = OldWriter(ip_version=6, ipv4_compatible=True, database_type="GeoLite2-Country")
    writer.insert_network(IPSet(["81.2.69.0/24"]), {"country": {"iso_code": "GB"}})
    writer.to_db_file(str(old))
    res = nw(netwatch_cmd, "geoip", "status")
    assert "warning: GeoLite2-Country.mmdb is 40 days old; run `geoipupdate`" in res.stdout
    assert res.stdout.splitlines()[1].split() == ["geolite2", str(old)]


class OldWriter(MMDBWriter):  # type: ignore[misc]  # mmdb_writer is untyped
    """Writes a file whose build date is 40 days ago."""

    def _build_meta(self) -> dict[str, Any]:
        meta: dict[str, Any] = super()._build_meta()
        meta["build_epoch"] = int(time.time()) - 40 * 86400 - 3600
        return meta
