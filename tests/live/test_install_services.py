"""`scripts/apt-install-no-services` leaves no service that an install brought enabled or running.

The test builds a small Debian package whose maintainer scripts do what debhelper's do for a
daemon (enable its systemd unit, add SysV start links, start it), installs it through the
script with the real apt and dpkg, checks `systemctl is-enabled`, the rc links and that the
daemon never started, then purges it. A unit the admin enabled before the install stays
enabled (only what the install added is turned off).
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import requires_root, requires_tools

pytestmark = [
    pytest.mark.live,
    requires_root,
    requires_tools("apt-get", "dpkg-deb", "systemctl", "update-rc.d", "deb-systemd-helper"),
]

NAME = "netwatch-test-dummy-service"
MARKER = Path("/run") / f"{NAME}.started"

UNIT = f"""[Unit]
Description=netwatch test dummy (never meant to run)
[Service]
ExecStart=/bin/sh -c 'touch {MARKER}; exec sleep 600'
[Install]
WantedBy=multi-user.target
"""

INIT = f"""#!/bin/sh
### BEGIN INIT INFO
# Provides:          {NAME}
# Required-Start:
# Required-Stop:
# Default-Start:     2 3 4 5
# Default-Stop:      0 1 6
# Short-Description: netwatch test dummy
### END INIT INFO
[ "$1" = start ] && touch {MARKER}
exit 0
"""

POSTINST = f"""#!/bin/sh
set -e
deb-systemd-helper enable {NAME}.service >/dev/null || true
update-rc.d {NAME} defaults >/dev/null
invoke-rc.d {NAME} start || true
deb-systemd-invoke start {NAME}.service >/dev/null 2>&1 || true
"""

POSTRM = f"""#!/bin/sh
if [ "$1" = purge ]; then
  update-rc.d {NAME} remove >/dev/null || true
  deb-systemd-helper purge {NAME}.service >/dev/null || true
fi
exit 0
"""


def _build(root: Path) -> Path:
    tree = root / NAME
    (tree / "DEBIAN").mkdir(parents=True)
    (tree / "DEBIAN" / "control").write_text(
        f"Package: {NAME}\nVersion: 1.0\nArchitecture: all\nMaintainer: netwatch tests"
        " <tests@invalid>\nDescription: throwaway package for a netwatch test\n",
        encoding="ascii",
    )
    files = {
        "DEBIAN/postinst": POSTINST,
        "DEBIAN/postrm": POSTRM,
        f"etc/init.d/{NAME}": INIT,
        f"lib/systemd/system/{NAME}.service": UNIT,
    }
    for rel, text in files.items():
        path = tree / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="ascii")
        path.chmod(0o755 if "init.d" in rel or "DEBIAN/post" in rel else 0o644)
    deb = root / f"{NAME}.deb"
    subprocess.run(
        ["dpkg-deb", "--build", "--root-owner-group", str(tree), str(deb)],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return deb


def _purge() -> None:
    subprocess.run(["dpkg", "--purge", NAME], capture_output=True, timeout=120, check=False)
    MARKER.unlink(missing_ok=True)


@pytest.fixture
def dummy_deb(tmp_path: Path) -> Iterator[Path]:
    _purge()
    yield _build(tmp_path)
    _purge()


def _enabled(unit: str) -> str:
    res = subprocess.run(
        ["systemctl", "is-enabled", unit], capture_output=True, text=True, timeout=30, check=False
    )
    return res.stdout.strip()


def _start_links() -> list[Path]:
    return [
        p
        for d in ("rc2.d", "rc3.d", "rc4.d", "rc5.d")
        for p in (Path("/etc") / d).glob(f"S??{NAME}")
    ]


def test_an_installed_service_is_left_disabled_and_never_started(
    repo_root: Path, dummy_deb: Path
) -> None:
    res = subprocess.run(
        [str(repo_root / "scripts" / "apt-install-no-services"), str(dummy_deb)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert res.returncode == 0, res.stderr
    assert f"{NAME}.service" in res.stdout  # it says what it left off
    assert _enabled(f"{NAME}.service") != "enabled"
    assert _start_links() == []
    assert not MARKER.exists(), "the maintainer script started the service"
    if Path("/run/systemd/system").is_dir():  # systemd runs: ask it too
        active = subprocess.run(
            ["systemctl", "is-active", f"{NAME}.service"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert active.stdout.strip() != "active"


def test_a_plain_install_would_have_enabled_it(dummy_deb: Path) -> None:
    """The control case: the same package through plain dpkg is enabled (what the script undoes)."""
    subprocess.run(["dpkg", "-i", str(dummy_deb)], check=True, capture_output=True, timeout=300)
    assert _enabled(f"{NAME}.service") == "enabled"
    assert _start_links() != []


def test_a_service_enabled_before_the_install_stays_enabled(
    repo_root: Path, dummy_deb: Path
) -> None:
    subprocess.run(["dpkg", "-i", str(dummy_deb)], check=True, capture_output=True, timeout=300)
    assert _enabled(f"{NAME}.service") == "enabled"  # the admin's choice, made before
    res = subprocess.run(
        [str(repo_root / "scripts" / "apt-install-no-services"), "--reinstall", str(dummy_deb)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert res.returncode == 0, res.stderr
    assert _enabled(f"{NAME}.service") == "enabled"


def test_policy_file_is_put_back(repo_root: Path, dummy_deb: Path) -> None:
    policy = Path("/usr/sbin/policy-rc.d")
    before = policy.read_bytes() if policy.exists() else None
    subprocess.run(
        [str(repo_root / "scripts" / "apt-install-no-services"), str(dummy_deb)],
        capture_output=True,
        timeout=300,
        check=True,
    )
    after = policy.read_bytes() if policy.exists() else None
    assert after == before
