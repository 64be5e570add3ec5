"""Every file and folder netwatch writes has its own mode, whatever the umask.

Each test runs netwatch under umask 000 (the worst a hand run can have) and then checks every
file and folder netwatch made: none is readable by others, and only the daemon's outputs
may be readable by the `netwatch` group (when that group exists and root wrote them).
What netwatch writes names processes, command lines, users and remote addresses.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from netwatch import files, paths
from netwatch.enrich.rdap_cache import OwnerCache
from netwatch.export.sinks import FileSink
from tests.builders import make_alert
from tests.cli.test_geoip import THIS, asn_gz, country_gz
from tests.cli.test_geoip import server as geoip_server  # noqa: F401  # a fixture, used by name
from tests.unit.test_lists import LIST
from tests.unit.test_lists import server as list_server  # noqa: F401  # a fixture, used by name


@pytest.fixture
def umask_000() -> Iterator[None]:
    """This process and every child it starts create files with umask 000."""
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


def loose(root: Path) -> list[str]:
    """Paths under (and including) `root` that others may read, or a group that is not ours."""
    gid = files.group_id()
    found = []
    for path in (root, *root.rglob("*")):
        st = path.lstat()
        if stat.S_ISSOCK(st.st_mode):
            continue  # the socket is 0660 root:netwatch on purpose; the server tests check it
        mode = stat.S_IMODE(st.st_mode)
        if mode & 0o007 or (mode & 0o070 and (gid is None or st.st_gid != gid)):
            found.append(f"{path} {mode:04o}")
    return found


def run(cmd: list[str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*cmd, *args], capture_output=True, text=True, timeout=120, check=False)


def test_daemon_store_and_export_file(
    umask_000: None, netwatch_cmd: list[str], tmp_path: Path
) -> None:
    made = tmp_path / "made"
    res = run(
        netwatch_cmd,
        "daemon",
        "--ticks", "2",
        "--interval", "0.1",
        "--no-capture",
        "--db", str(made / "state" / "netwatch.db"),
        "--socket", str(tmp_path / "nw.sock"),
        "--export-file", str(made / "export" / "alerts.csv"),
        "--export-format", "csv",
        "--flow-export-file", str(made / "flows" / "flows.ndjson"),
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert (made / "export" / "alerts.csv").read_text().startswith("id,rule,")
    assert (made / "flows" / "flows.ndjson").exists()
    assert (made / "state" / "netwatch.db").exists()
    assert loose(made) == []


def test_rotated_export_files(umask_000: None, tmp_path: Path) -> None:
    made = tmp_path / "made"
    sink = FileSink(made / "alerts.jsonl", "jsonl", max_bytes=300, backups=3)
    try:
        for n in range(12):
            sink.emit(make_alert(f"a{n}"))
    finally:
        sink.close()
    assert (made / "alerts.jsonl.1").exists()  # it did rotate
    assert loose(made) == []


def test_record_and_export_outputs(
    umask_000: None, netwatch_cmd: list[str], tmp_path: Path
) -> None:
    made = tmp_path / "made"
    made.mkdir(mode=0o700)
    rec = run(netwatch_cmd, "record", str(made / "rec.jsonl"), "--ticks", "1", "--no-capture")
    assert rec.returncode == 0, rec.stderr
    db = tmp_path / "store.db"
    run(netwatch_cmd, "daemon", "--ticks", "1", "--interval", "0.1", "--no-capture",
        "--db", str(db), "--socket", str(tmp_path / "nw.sock"))  # fmt: skip
    out = run(netwatch_cmd, "export", "--db", str(db), "--format", "jsonl", "-o",
              str(made / "alerts.jsonl"))  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert (made / "alerts.jsonl").exists()
    assert loose(made) == []


def test_list_histories_and_rdap_cache(
    umask_000: None,
    netwatch_cmd: list[str],
    list_server: tuple[str, dict[str, tuple[int, bytes]]],  # noqa: F811  # the fixture above
) -> None:
    base, routes = list_server
    routes["/api/iphone/"] = (200, LIST.encode())
    res = run(netwatch_cmd, "lists", "update", "--only", "vpngate", "--vpngate-url",
              f"{base}/api/iphone/")  # fmt: skip
    assert res.returncode == 0, res.stderr
    cache = OwnerCache.open(paths.cache_dir() / "rdap.sqlite3", clock=lambda: 0.0)
    assert cache is not None
    home = Path(os.environ["HOME"])
    assert (paths.data_dir() / "lists" / "vpngate.json").exists()
    assert loose(home / ".local") == [] and loose(home / ".cache") == []


def test_geoip_update(
    umask_000: None,
    netwatch_cmd: list[str],
    geoip_server: dict[str, bytes],  # noqa: F811  # the fixture above
    tmp_path: Path,
) -> None:
    geoip_server[f"/free/dbip-country-lite-{THIS}.mmdb.gz"] = country_gz(tmp_path)
    geoip_server[f"/free/dbip-asn-lite-{THIS}.mmdb.gz"] = asn_gz(tmp_path)
    res = subprocess.run([*netwatch_cmd, "geoip", "update"], capture_output=True, text=True,
                         timeout=120, env=os.environ.copy(), check=False)  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert (paths.data_dir() / "geoip" / "dbip-country-lite.mmdb").exists()
    assert loose(Path(os.environ["HOME"]) / ".local") == []


def test_an_older_loose_file_is_tightened_when_written(tmp_path: Path) -> None:
    out = tmp_path / "rec.jsonl"
    out.write_text("old\n")
    out.chmod(0o666)
    with files.open_private(out, "w") as fh:
        fh.write(json.dumps({"x": 1}))
    assert stat.S_IMODE(out.stat().st_mode) == 0o600


def test_a_symlink_where_a_file_goes_is_refused(tmp_path: Path) -> None:
    """Root writes the export file: a planted link must not make it chmod or fill another file."""
    victim = tmp_path / "victim"
    victim.write_text("keep\n")
    victim.chmod(0o644)
    link = tmp_path / "alerts.jsonl"
    link.symlink_to(victim)
    with pytest.raises(OSError, match="Too many levels of symbolic links"):
        files.open_private(link, "a")
    assert victim.read_text() == "keep\n" and stat.S_IMODE(victim.stat().st_mode) == 0o644


def test_export_to_a_symlink_is_one_line(netwatch_cmd: list[str], tmp_path: Path) -> None:
    db = tmp_path / "store.db"
    run(netwatch_cmd, "daemon", "--ticks", "1", "--interval", "0.1", "--no-capture",
        "--db", str(db), "--socket", str(tmp_path / "nw.sock"))  # fmt: skip
    (tmp_path / "out").symlink_to(tmp_path / "elsewhere")
    res = run(netwatch_cmd, "export", "--db", str(db), "--format", "csv", "-o",
              str(tmp_path / "out"))  # fmt: skip
    assert res.returncode == 1 and "Traceback" not in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert not (tmp_path / "elsewhere").exists()
