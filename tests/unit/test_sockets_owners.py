"""The inode -> process cache against a fake /proc tree (the OS is outside; our logic is real).

The tree has what the cache reads: /proc/<pid>/stat and /proc/<pid>/fd/<n> links to
`socket:[inode]`. The process details come from a dictionary standing in for psutil.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from netwatch.model import ProcessRef
from netwatch.sources.processes import SocketOwners


class FakeProc:
    """A /proc tree plus the details psutil would report for each pid."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.details: dict[int, ProcessRef] = {}
        self.reads: list[int] = []

    def spawn(self, pid: int, name: str, start: int, sockets: dict[int, int]) -> None:
        """A process `pid` with fd number -> socket inode."""
        base = self.root / str(pid)
        if base.exists():
            shutil.rmtree(base)
        (base / "fd").mkdir(parents=True)
        self.set_stat(pid, name, start)
        for fd, inode in sockets.items():
            self.open_fd(pid, fd, inode)
        self.details[pid] = ProcessRef(pid=pid, create_time=1000.0 + start, name=name)

    def set_stat(self, pid: int, name: str, start: int) -> None:
        rest = " ".join(["0"] * 17)  # fields 5-21; field 22 is the start time
        (self.root / str(pid) / "stat").write_text(f"{pid} ({name}) S 1 {rest} {start} 0 0\n")

    def open_fd(self, pid: int, fd: int, inode: int) -> None:
        link = self.root / str(pid) / "fd" / str(fd)
        if link.is_symlink():
            link.unlink()
        os.symlink(f"socket:[{inode}]", link)

    def exit(self, pid: int) -> None:
        shutil.rmtree(self.root / str(pid))
        del self.details[pid]

    def read(self, pid: int) -> ProcessRef | None:
        self.reads.append(pid)
        return self.details.get(pid)


def make(tmp_path: Path) -> tuple[FakeProc, SocketOwners]:
    proc = FakeProc(tmp_path)
    return proc, SocketOwners(str(tmp_path), proc)


def test_maps_inodes_to_processes_and_caches(tmp_path: Path) -> None:
    proc, owners = make(tmp_path)
    proc.spawn(100, "curl", 5, {3: 501, 4: 502})
    proc.spawn(200, "sshd", 7, {5: 601})
    found = owners.owners({501, 502, 601, 999})
    assert {i: p.name for i, p in found.items()} == {501: "curl", 502: "curl", 601: "sshd"}
    assert owners.scans == 1
    assert owners.owners({501, 502, 601, 999}) == found
    assert owners.scans == 1  # nothing new (999 is remembered as nobody's)


def test_new_socket_on_new_fd_is_found_reading_only_new_links(tmp_path: Path) -> None:
    proc, owners = make(tmp_path)
    proc.spawn(100, "curl", 5, {3: 501})
    owners.owners({501})
    proc.open_fd(100, 9, 777)
    # Break an old link: if the cache re-read old fds it would not find 501 any more.
    os.unlink(tmp_path / "100" / "fd" / "3")
    os.symlink("/dev/null", tmp_path / "100" / "fd" / "3")
    found = owners.owners({501, 777})
    assert found[777].pid == 100 and found[501].pid == 100
    assert owners.scans == 2


def test_fd_of_a_closed_socket_reused_for_a_new_one_is_found_at_once(tmp_path: Path) -> None:
    proc, owners = make(tmp_path)
    proc.spawn(100, "curl", 5, {3: 501})
    owners.owners({501})
    proc.open_fd(100, 3, 888)  # socket 501 closed, fd 3 reopened as a new socket
    assert owners.owners({888})[888].pid == 100


def test_fd_of_a_closed_file_reused_for_a_socket_is_found_one_sample_later(
    tmp_path: Path,
) -> None:
    proc, owners = make(tmp_path)
    proc.spawn(100, "curl", 5, {3: 501})
    os.symlink("/etc/hosts", tmp_path / "100" / "fd" / "4")
    owners.owners({501})
    (tmp_path / "100" / "fd" / "4").unlink()
    proc.open_fd(100, 4, 889)  # the file was closed and fd 4 reused for a socket
    # Reading every link is deferred one sample: most unresolved sockets are short-lived.
    assert 889 not in owners.owners({501, 889})
    assert owners.owners({501, 889})[889].pid == 100
    scans = owners.scans
    assert owners.owners({501, 889})[889].pid == 100
    assert owners.scans == scans


def test_hidden_socket_costs_one_full_read_then_none(tmp_path: Path) -> None:
    proc, owners = make(tmp_path)
    proc.spawn(100, "curl", 5, {3: 501})
    owners.owners({501})
    proc.open_fd(100, 4, 502)
    hidden = {501, 502, 999}  # 999: another user's socket, no readable fd links to it
    owners.owners(hidden)
    owners.owners(hidden)
    scans = owners.scans
    assert set(owners.owners(hidden)) == {501, 502}
    assert owners.scans == scans


def test_pid_reuse_is_caught_by_start_time(tmp_path: Path) -> None:
    proc, owners = make(tmp_path)
    proc.spawn(100, "curl", 5, {3: 501})
    old = owners.owners({501})[501]
    # The process exits and an unrelated one gets pid 100, with a socket that has the
    # same fd number; the old socket inode is still listed (e.g. inherited elsewhere).
    proc.exit(100)
    proc.spawn(100, "curl", 9, {3: 502})
    found = owners.owners({501, 502})
    assert 501 not in found
    assert found[502].create_time == 1009.0 and found[502].create_time != old.create_time


def test_pid_reuse_with_a_different_program(tmp_path: Path) -> None:
    proc, owners = make(tmp_path)
    proc.spawn(100, "curl", 5, {3: 501})
    assert owners.owners({501})[501].name == "curl"
    proc.exit(100)
    proc.spawn(100, "nc", 6, {3: 501})  # same inode number reused by the kernel
    assert owners.owners({501})[501].name == "nc"


def test_exec_refreshes_details_but_keeps_sockets(tmp_path: Path) -> None:
    proc, owners = make(tmp_path)
    proc.spawn(100, "bash", 5, {3: 501})
    owners.owners({501})
    scans = owners.scans
    proc.set_stat(100, "vpnclient", 5)
    proc.details[100] = ProcessRef(pid=100, create_time=1005.0, name="vpnclient")
    assert owners.owners({501})[501].name == "vpnclient"
    assert owners.scans == scans


def test_exited_owner_is_dropped(tmp_path: Path) -> None:
    proc, owners = make(tmp_path)
    proc.spawn(100, "curl", 5, {3: 501})
    proc.spawn(300, "child", 6, {})
    owners.owners({501})
    proc.exit(100)
    proc.open_fd(300, 3, 501)  # the child inherited the socket
    assert owners.owners({501})[501].pid == 300


def test_process_that_vanishes_between_listing_and_reading_is_skipped(tmp_path: Path) -> None:
    proc, owners = make(tmp_path)
    proc.spawn(100, "curl", 5, {3: 501})
    proc.spawn(200, "gone", 6, {3: 601})
    del proc.details[200]  # psutil says NoSuchProcess
    found = owners.owners({501, 601})
    assert set(found) == {501}


def test_unreadable_fd_folder_is_skipped(tmp_path: Path) -> None:
    proc, owners = make(tmp_path)
    proc.spawn(100, "curl", 5, {3: 501})
    (tmp_path / "150").mkdir()
    (tmp_path / "150" / "fd").write_text("not a folder")
    (tmp_path / "notapid").mkdir()
    assert set(owners.owners({501, 0})) == {501}


def test_shared_socket_goes_to_the_lowest_pid(tmp_path: Path) -> None:
    proc, owners = make(tmp_path)
    proc.spawn(300, "worker", 8, {3: 501})
    proc.spawn(120, "master", 5, {3: 501})
    assert owners.owners({501})[501].name == "master"


def test_closed_sockets_are_forgotten(tmp_path: Path) -> None:
    proc, owners = make(tmp_path)
    proc.spawn(100, "curl", 5, {3: 501, 4: 502})
    owners.owners({501, 502})
    assert set(owners.owners({502})) == {502}
    proc.spawn(100, "curl", 5, {})
    proc.spawn(101, "wget", 6, {3: 501})  # inode number reused for a new socket
    assert owners.owners({501, 502})[501].name == "wget"


def test_owners_again_is_owners_of_the_same_inodes(tmp_path: Path) -> None:
    """`owners_again()` answers what `owners()` of the last call's inodes would: a socket
    still being looked up is looked up again, an exec'd owner is read again, and a quiet
    cache answers the very same mapping without a scan."""
    proc, owners = make(tmp_path)
    proc.spawn(100, "curl", 5, {3: 501})
    os.symlink("/etc/hosts", tmp_path / "100" / "fd" / "4")
    owners.owners({501})
    (tmp_path / "100" / "fd" / "4").unlink()
    proc.open_fd(100, 4, 889)  # found one sample later (see the test above)
    assert 889 not in owners.owners({501, 889})
    assert owners.owners_again()[889].pid == 100  # still wanted: looked up again
    found, scans, version = owners.owners_again(), owners.scans, owners.version
    assert owners.owners_again() is found and owners.scans == scans
    assert owners.version == version
    proc.set_stat(100, "wget", 5)  # exec: same pid and start, new name
    proc.details[100] = ProcessRef(pid=100, create_time=1005.0, name="wget")
    again = owners.owners_again()
    assert again[501].name == "wget" and again[889].name == "wget"
    assert owners.version == version + 1
