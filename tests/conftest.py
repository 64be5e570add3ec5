"""Shared fixtures: config isolation for every test, and the root check for live tests."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

# No per-example deadline anywhere: on a loaded CI machine one slow example (a first import,
# a GC pause) would fail a property test that holds. Tests that need more examples say so.
settings.register_profile("netwatch", deadline=None)
settings.load_profile("netwatch")

IS_ROOT = os.geteuid() == 0

requires_root = pytest.mark.skipif(
    not IS_ROOT, reason="needs root: creates network namespaces and captures packets"
)


def pytest_addoption(parser: pytest.Parser) -> None:
    """`--idle`: run without the background load (tests/busy.py) that a root run starts.

    `--golden-update`: rewrite tests/golden/expected/ from what netwatch now says about the
    golden captures (review the diff before committing it).
    """
    parser.addoption(
        "--idle",
        action="store_true",
        help="do not start the background load (another program's traffic) for this run",
    )
    parser.addoption(
        "--golden-update",
        action="store_true",
        help="rewrite the golden tests' expected files instead of comparing with them",
    )


@pytest.fixture(scope="session", autouse=True)
def _busy_machine(request: pytest.FixtureRequest) -> Iterator[None]:
    """Run every test beside another program's connections and traffic, as on a real machine.

    Tests must pass on a machine that is not idle (tests/busy.py says why); as root the whole
    session runs with that load unless `--idle` is given.
    """
    if not IS_ROOT or request.config.getoption("--idle"):
        yield
        return
    from tests.busy import BackgroundLoad

    with BackgroundLoad():
        yield


def requires_tools(*tools: str) -> pytest.MarkDecorator:
    """Skip with a clear reason when a program the test runs is not installed."""
    missing = [t for t in tools if shutil.which(t) is None and not Path(t).exists()]
    return pytest.mark.skipif(bool(missing), reason=f"not installed: {', '.join(missing)}")


@pytest.fixture(autouse=True)
def _isolated_env(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Point HOME, XDG_* and the system config folder at a temp dir, drop NETWATCH_*.

    No user or site config, and no folder of a running daemon, leaks into a test.
    """
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    for var, sub in (
        ("XDG_CONFIG_HOME", ".config"),
        ("XDG_CACHE_HOME", ".cache"),
        ("XDG_DATA_HOME", ".local/share"),
        ("XDG_STATE_HOME", ".local/state"),
        ("XDG_RUNTIME_DIR", "run"),
    ):
        monkeypatch.setenv(var, str(home / sub))
    # The site's /etc/netwatch/config.toml (and a systemd unit's folders) must not reach
    # the tests either: the system config is looked for in an empty folder of their own.
    monkeypatch.setenv("CONFIGURATION_DIRECTORY", str(home / "etc-netwatch"))
    for var in list(os.environ):
        if var.startswith("NETWATCH_") or var in (
            "GEOIPUPDATE_DB_DIR",
            "GEOIPUPDATE_CONF_FILE",
            "STATE_DIRECTORY",
            "RUNTIME_DIRECTORY",
        ):
            monkeypatch.delenv(var, raising=False)


@pytest.fixture
def netwatch_cmd() -> list[str]:
    """The command that runs this checkout's netwatch in a subprocess."""
    return [sys.executable, "-m", "netwatch"]


@pytest.fixture
def repo_root() -> Iterator[Path]:
    """The project's root folder."""
    return Path(__file__).resolve().parent.parent


def run(argv: list[str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run a command with text output captured; a non-zero exit is the caller's to check."""
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
