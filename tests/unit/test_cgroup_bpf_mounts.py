"""Finding the cgroup2 hierarchy in mountinfo (proc(5) format), in this process's view or,
when its mount namespace lacks it (`ip netns exec` remounts /sys), through another's root."""

from __future__ import annotations

import os
from pathlib import Path

from netwatch.sources.cgroup_bpf import cgroup2_root

V1 = "35 31 0:30 / /sys/fs/cgroup/cpu rw,nosuid - cgroup cgroup rw,cpu\n"


def _line(mount: Path) -> str:
    return f"41 31 0:38 / {mount} rw,relatime shared:9 - cgroup2 cgroup2 rw\n"


def test_own_view_first(tmp_path: Path) -> None:
    (tmp_path / "self").mkdir()
    mount = tmp_path / "unified"
    mount.mkdir()
    (tmp_path / "self" / "mountinfo").write_text(V1 + _line(mount))
    assert cgroup2_root(str(tmp_path)) == str(mount)


def test_a_parent_s_view_when_this_mount_namespace_has_none(tmp_path: Path) -> None:
    (tmp_path / "self").mkdir()
    (tmp_path / "self" / "mountinfo").write_text(V1)
    parent = tmp_path / str(os.getppid())
    (parent / "root" / "sys" / "fs" / "cgroup").mkdir(parents=True)
    (parent / "mountinfo").write_text(_line(Path("/sys/fs/cgroup")))
    assert cgroup2_root(str(tmp_path)) == f"{parent}/root/sys/fs/cgroup"


def test_none_without_a_cgroup2_mount_or_an_unreadable_one(tmp_path: Path) -> None:
    (tmp_path / "self").mkdir()
    (tmp_path / "self" / "mountinfo").write_text(V1 + _line(tmp_path / "missing"))
    assert cgroup2_root(str(tmp_path)) is None
