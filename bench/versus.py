"""Daemon CPU of this checkout against another revision, in turns over the same connections.

`bench/daemon.py` measures one tree. Two of its runs taken minutes apart mix the change with
the machine's own drift: on the 2-core VM this was written on, the same tree measured 1.5
and 2.5 % of a core half an hour apart, and single 40 s windows moved by a fifth. Here both
daemons watch the very same held connections, in turns: for each count and mode the two
holder processes start once, then each round runs one tree's daemon and then the other's
(which goes first alternates), each for a warm-up and a measured window. The table gives
each tree's median and range over the rounds, and their ratio.

The other revision is checked out into a temporary git worktree (removed at the end), or
`--tree` names a checkout to use as it is. Both run under this interpreter, each from its
own directory (`python -m netwatch` finds the package of its working directory first). As
root everything runs in a private network namespace, as in `bench/daemon.py`. CPU is the
daemon's and its children's (the split daemon's collector) utime + stime.

    python bench/versus.py --rev dff8169 [--counts 1000] [--modes idle,active,full]
        [--rounds 5] [--seconds 30] [--warmup 6] [--active 100]
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import daemon as bench  # noqa: E402  # bench/daemon.py: holders, CPU readings, namespace

REPO = bench.REPO
MODES = {
    "idle": (0, ()),
    "active": (None, ()),  # --active connections send 100 bytes a second
    "full": (0, ("--full-sample-every", "0")),
}


@contextlib.contextmanager
def checkout(rev: str | None, tree: str | None) -> Iterator[Path]:
    """The other tree: `tree` as it is, or `rev` in a temporary worktree."""
    if tree is not None:
        yield Path(tree).resolve()
        return
    if rev is None:
        raise SystemExit("versus: give --rev REV or --tree PATH")
    where = Path(tempfile.mkdtemp(prefix="nwversus-")) / "tree"
    made = subprocess.run(
        ["git", "-C", str(REPO), "worktree", "add", "--detach", str(where), rev],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if made.returncode != 0:
        raise SystemExit(f"versus: cannot check out {rev}: {made.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(
            ["git", "-C", str(REPO), "worktree", "remove", "--force", str(where)], check=False
        )
        shutil.rmtree(where.parent, ignore_errors=True)


def one_window(tree: Path, seconds: float, warmup: float, extra: tuple[str, ...]) -> float:
    """CPU % of one core of `tree`'s daemon over one window (after `warmup`)."""
    work = Path(tempfile.mkdtemp(prefix="nwversus-"))
    daemon = subprocess.Popen(
        [*bench.PREFIX, sys.executable, "-m", "netwatch", "daemon", "--interval", "1",
         "--db", str(work / "n.db"), "--socket", str(work / "n.sock"), *extra],
        cwd=tree, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        time.sleep(warmup)
        start_cpu, start = bench.cpu_seconds(daemon.pid), time.monotonic()
        time.sleep(seconds)
        return 100 * (bench.cpu_seconds(daemon.pid) - start_cpu) / (time.monotonic() - start)
    finally:
        daemon.send_signal(signal.SIGTERM)
        try:
            daemon.wait(10)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait(10)
        shutil.rmtree(work, ignore_errors=True)


def compare(
    trees: dict[str, Path], n: int, active: int, extra: tuple[str, ...], args: argparse.Namespace
) -> dict[str, list[float]]:
    """Each tree's CPU % per round, both over the same held connections."""
    holders = bench.hold(n, active)
    names = list(trees)
    got: dict[str, list[float]] = {name: [] for name in names}
    try:
        time.sleep(2)  # the connection set-up settles
        for r in range(args.rounds):
            for name in names if r % 2 == 0 else reversed(names):
                got[name].append(one_window(trees[name], args.seconds, args.warmup, extra))
    finally:
        bench.release(holders)
    return got


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rev", help="the revision to compare with (a temporary worktree)")
    ap.add_argument("--tree", help="a checkout to compare with, used as it is")
    ap.add_argument("--counts", default="1000")
    ap.add_argument("--modes", default="idle,active,full")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--warmup", type=float, default=6.0)
    ap.add_argument("--active", type=int, default=100, help="connections sending each second")
    args = ap.parse_args()
    modes = args.modes.split(",")
    if unknown := [m for m in modes if m not in MODES]:
        raise SystemExit(f"versus: unknown mode {unknown[0]!r} (one of {', '.join(MODES)})")
    other_name = args.rev or args.tree
    with bench.private_namespace("nwversus") as private, checkout(args.rev, args.tree) as other:
        trees = {"this checkout": REPO, str(other_name): other}
        rows = []
        for n in (int(x) for x in args.counts.split(",")):
            for mode in modes:
                sending, extra = MODES[mode]
                active = min(args.active, n) if sending is None else sending
                label = f"{active:,} active" if sending is None else mode
                rows.append((n, label, compare(trees, n, active, extra, args)))
    where = "a private network namespace" if private else "the host namespace"
    print(
        f"netwatch daemon at 1 Hz, CPU % of a core: {args.rounds} rounds of {args.seconds:.0f} s"
        f" per tree in turns over the same connections, in {where}"
    )
    print()
    print(f"| connections | mode | this checkout | {other_name} | this / {other_name} |")
    print("|---:|---|---|---|---:|")
    for n, label, got in rows:
        mine, theirs = got["this checkout"], got[str(other_name)]
        cells = [f"{statistics.median(v):.2f} ({min(v):.2f}-{max(v):.2f})" for v in (mine, theirs)]
        base = statistics.median(theirs)
        ratio = f"{statistics.median(mine) / base:.2f}" if base else "n/a"
        print(f"| {n:,} | {label} | {cells[0]} | {cells[1]} | {ratio} |")
    print()
    print("Each cell: the median over the rounds (lowest-highest).")


if __name__ == "__main__":
    main()
