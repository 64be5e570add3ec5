"""`netwatch lists update|status`: relay lists and VPN provider ranges, fetched only on request.

`update` downloads the VPN Gate list and Tor relay data (never automatically: fetching the
VPN Gate list is itself what `vpngate.list_fetch` reports, and the rule engine excludes this
command's own process), validates them, and merges them into the rolling histories under the
data directory. `update --only ranges` (or one provider's name) fetches the VPN providers'
published server lists instead (`enrich.provider_formats`), each stored whole with its source
and date. URLs can be overridden (`--vpngate-url`, `--tor-url`, `--url` with one `--only`, or
`NETWATCH_VPNGATE_URL`, `NETWATCH_TOR_URL`, `NETWATCH_<PROVIDER>_URL`) so tests serve lists
from a local server. `status` says what is stored, the bundled WARP ranges included.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from netwatch import __version__
from netwatch.cli.common import add_format, report_skipped, write_lines
from netwatch.enrich.ranges import FETCHED as RANGES
from netwatch.errors import DataFileError, NetwatchError, UsageError

if TYPE_CHECKING:
    from rich.console import Console

DEFAULT_URLS = {
    "vpngate": "https://www.vpngate.net/api/iphone/",
    "tor": "https://onionoo.torproject.org/details?type=relay&running=true"
    "&fields=or_addresses,exit_addresses",
}
ENV_URLS = {"vpngate": "NETWATCH_VPNGATE_URL", "tor": "NETWATCH_TOR_URL"}
CHUNK = 1 << 16


def _env_url(name: str) -> str:
    """`NETWATCH_<NAME>_URL`: where tests (or a mirror) serve one list."""
    return ENV_URLS.get(name) or f"NETWATCH_{name.upper().replace('-', '_')}_URL"


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register `lists update` and `lists status`."""
    parser = sub.add_parser(
        "lists", help="VPN Gate and Tor relay lists, VPN provider ranges: status, opt-in update"
    )
    lists_sub = parser.add_subparsers(dest="lists_command", metavar="SUBCOMMAND", required=True)
    update = lists_sub.add_parser(
        "update",
        help="download the VPN Gate list and Tor relay data (--only ranges: the VPN providers' "
        "server lists) now (never automatic)",
    )
    update.add_argument(
        "--only",
        choices=("vpngate", "tor", "ranges", *RANGES),
        help="update just one list; 'ranges' fetches every VPN provider's server list",
    )
    update.add_argument("--url", help="where to fetch the one list --only names")
    update.add_argument(
        "--vpngate-url", help=f"VPN Gate list URL (default {DEFAULT_URLS['vpngate']})"
    )
    update.add_argument(
        "--tor-url", help="Tor relay data URL: Onionoo details, consensus or exit list"
    )
    update.add_argument(
        "--timeout", type=float, default=30.0, help="seconds per download (default 30)"
    )
    update.set_defaults(func=run_update)
    status = lists_sub.add_parser("status", help="what the stored lists hold and how old they are")
    add_format(status)
    status.set_defaults(func=run_status)


def _fetch(url: str, timeout: float, progress: Callable[[int, int | None], None]) -> bytes:
    from netwatch.enrich.vpngate_list import MAX_BYTES

    request = urllib.request.Request(  # noqa: S310  # the URL is the user's choice (http/https)
        url, headers={"User-Agent": f"netwatch/{__version__} (lists update)"}
    )
    if not url.startswith(("http://", "https://")):
        raise NetwatchError(f"{url}: only http:// and https:// URLs can be fetched")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:  # noqa: S310  # checked above
            total = resp.headers.get("Content-Length")
            size = int(total) if total and total.isdecimal() else None
            chunks: list[bytes] = []
            done = 0
            while chunk := resp.read(CHUNK):
                chunks.append(chunk)
                done += len(chunk)
                if done > MAX_BYTES:
                    raise NetwatchError(f"{url}: more than {MAX_BYTES} bytes; not a relay list")
                progress(done, size)
            return b"".join(chunks)
    except urllib.error.HTTPError as exc:
        raise NetwatchError(f"{url}: server answered {exc.code} {exc.reason}") from None
    except urllib.error.URLError as exc:
        raise NetwatchError(f"{url}: cannot fetch: {exc.reason}") from None
    except (TimeoutError, OSError) as exc:
        raise NetwatchError(f"{url}: cannot fetch: {exc}") from None


def _download(name: str, url: str, timeout: float) -> bytes:
    """Fetch one list with a progress bar on stderr."""
    from rich.progress import DownloadColumn, Progress, TextColumn, TransferSpeedColumn

    with Progress(
        TextColumn(f"{name:8}"),
        *Progress.get_default_columns()[1:3],
        DownloadColumn(),
        TransferSpeedColumn(),
        transient=True,
        console=_stderr_console(),
    ) as bar:
        task = bar.add_task(name, total=None)
        return _fetch(
            url, timeout, lambda done, total: bar.update(task, completed=done, total=total)
        )


def _update_ranges(provider: str, url: str, timeout: float) -> str:
    """Fetch one provider's server list and store it whole (it replaces the last one)."""
    from netwatch.enrich.provider_formats import PARSERS
    from netwatch.enrich.ranges import RangeList, save_ranges

    data = _download(provider, url, timeout)
    ranges = PARSERS[provider](data, f"{provider} list from {url}")
    path = save_ranges(RangeList(provider, tuple(ranges), url, time.time()))
    v6 = sum(r.network.version == 6 for r in ranges)
    return f"{provider}: {len(ranges)} ranges fetched ({len(ranges) - v6} IPv4, {v6} IPv6) ({path})"


def _update_one(name: str, url: str, timeout: float) -> str:
    from netwatch.enrich.lists import (
        KEEP_DAYS,
        History,
        load_history,
        parse_tor,
        relay_entries,
        save_history,
        set_aside,
    )
    from netwatch.enrich.vpngate_list import parse_vpngate

    if name in RANGES:
        return _update_ranges(name, url, timeout)
    data = _download(name, url, timeout)
    source = f"{name} list from {url}"
    entries = (
        relay_entries(parse_vpngate(data, source)) if name == "vpngate" else parse_tor(data, source)
    )
    note = ""
    try:
        history = load_history(name)
    except DataFileError as exc:
        # The fresh fetch is what is known good: start the history again from it, and keep
        # the damaged file next to it for a look.
        history = History(name, {})
        note = f"; the damaged history was set aside as {set_aside(name)} ({exc.message})"
    merged = history.merge(entries, time.time(), url)
    path = save_history(merged)
    noun = "relays" if name == "vpngate" else "relay addresses"
    kept = len(merged.entries)
    return (
        f"{name}: {len(entries)} {noun} fetched, {kept} in the {KEEP_DAYS}-day history "
        f"({path}){note}"
    )


def _stderr_console() -> Console:
    from rich.console import Console

    return Console(file=sys.stderr)


def run_update(args: argparse.Namespace) -> int:
    """Fetch, validate and merge each list; one line per list, exit 1 if any failed."""
    from netwatch.enrich.provider_formats import URLS

    names = {None: ["vpngate", "tor"], "ranges": list(RANGES)}.get(args.only, [args.only])
    if args.url is not None and len(names) != 1:
        raise UsageError("--url needs --only naming one list (vpngate, tor or a provider)")
    overrides = {"vpngate": args.vpngate_url, "tor": args.tor_url}
    if args.url is not None:
        overrides[names[0]] = args.url
    failed: list[str] = []
    for name in names:
        url = (
            overrides.get(name) or os.environ.get(_env_url(name)) or {**DEFAULT_URLS, **URLS}[name]
        )
        try:
            write_lines([_update_one(name, url, args.timeout)])
        except NetwatchError as exc:
            failed.append(f"{name}: {exc}")
    if failed:
        raise NetwatchError("\nnetwatch: ".join(failed))
    return 0


def _day(ts: float | None) -> str:
    return "never" if ts is None else datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M UTC")


def _range_rows(damaged: list[str]) -> list[dict[str, object]]:
    """One row per provider list: the bundled WARP ranges, then each fetched list."""
    from netwatch.enrich.ranges import (
        BUNDLED,
        RangeList,
        load_bundled,
        load_ranges,
        range_path,
    )

    rows: list[dict[str, object]] = []
    for name in ["warp", *RANGES]:
        bundled = name == "warp"
        path = BUNDLED if bundled else range_path(name)
        try:
            found: RangeList | None = load_bundled() if bundled else load_ranges(name)
        except DataFileError as exc:
            damaged.append(str(exc))
            continue
        rows.append(
            {
                "list": name,
                "kind": "bundled" if bundled else "ranges",
                "entries": len(found.ranges) if found else 0,
                "updated": found.fetched if found else None,
                "source": found.source if found else None,
                "file": str(path),
            }
        )
    return rows


def run_status(args: argparse.Namespace) -> int:
    """Print each list's size, last update and file; a damaged one is a stderr line, exit 1."""
    from netwatch.enrich.lists import LISTS, history_path, load_history

    rows: list[dict[str, object]] = []
    damaged: list[str] = []
    for name in LISTS:
        try:
            history = load_history(name)
        except DataFileError as exc:
            damaged.append(str(exc))
            continue
        rows.append(
            {
                "list": name,
                "kind": "history",
                "entries": len(history.entries),
                "updated": history.updated,
                "source": history.source,
                "file": str(history_path(name)),
            }
        )
    rows += _range_rows(damaged)
    if args.format == "jsonl":
        write_lines(json.dumps(r) for r in rows)
        return report_skipped(damaged)
    lines = []
    for r in rows:
        updated = r["updated"] if isinstance(r["updated"], float) else None
        noun = "addresses" if r["kind"] == "history" else "ranges   "
        when = "checked" if r["kind"] == "bundled" else "updated"
        lines.append(
            f"{r['list']:20} {r['entries']:>6} {noun}  {when} {_day(updated)}  {r['file']}"
        )
    if not damaged and all(r["entries"] == 0 for r in rows if r["kind"] != "bundled"):
        lines.append(
            "no lists stored yet; 'netwatch lists update' fetches the relay lists and "
            "'netwatch lists update --only ranges' the VPN providers' (opt-in)"
        )
    write_lines(lines)
    return report_skipped(damaged)
