"""Locks for machine-global test resources.

SoftEther keeps its state in fixed paths (/var/lib/softether, /run/softether) whatever the
namespace, so two tests (or two test runs) using it at once would clobber each other.
"""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

LOCK_DIR = Path("/run/lock") if Path("/run/lock").is_dir() else Path("/tmp")


@contextmanager
def machine_lock(name: str) -> Iterator[None]:
    """Hold an exclusive lock named `name` for the duration of the block."""
    path = LOCK_DIR / f"netwatch-test-{name}.lock"
    with path.open("w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


@contextmanager
def softether_lock() -> Iterator[None]:
    """The lock every test that starts SoftEther holds."""
    with machine_lock("softether"):
        yield
