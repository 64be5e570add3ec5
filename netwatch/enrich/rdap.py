"""RDAP owner lookups via ipwhois, off the hot path: worker pool, rate limit, caches.

`RdapResolver.owner(ip)` never blocks: it answers from memory or the on-disk cache, or starts a
background lookup and says `pending`. Lookups use `IPWhois(ip).lookup_rdap(bootstrap=True)`
(no ASN/DNS pre-query), with one urllib opener (ipwhois's `proxy_opener` seam) that applies a
per-registry rate limit before every request and, when a base URL is set
(`NETWATCH_RDAP_URL`), sends `https://rdap.db.ripe.net/ip/X` to `<base>/rdap.db.ripe.net/ip/X`
instead (tests point this at a server on 127.0.0.1). Answers are kept in SQLite under the
cache dir for 7 days; failures are remembered in memory (and "no such network" on disk) so
they are not retried on every tick. Offline gives `Owner("unknown", reason=...)`.
"""

from __future__ import annotations

import os
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from netwatch import paths
from netwatch.enrich.rdap_cache import OwnerCache
from netwatch.model import IPAddress, Owner

ENV_URL = "NETWATCH_RDAP_URL"
RIR_BY_HOST = {
    "rdap-bootstrap.arin.net": "arin",
    "rdap.arin.net": "arin",
    "rdap.db.ripe.net": "ripe",
    "rdap.apnic.net": "apnic",
    "rdap.lacnic.net": "lacnic",
    "rdap.afrinic.net": "afrinic",
}
RETRY_AFTER = 300.0
"""Seconds a transient failure (offline, timeout, rate limited) is remembered in memory."""
MAX_PENDING = 256
MAX_KNOWN = 20000
"""Owners kept in memory; beyond this the oldest are dropped (the disk cache still has them)."""


class RateLimiter:
    """At most one request start per `interval` seconds per key (registry), across threads."""

    def __init__(
        self,
        interval: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.interval = interval
        self._clock = clock
        self._sleep = sleep
        self._next: dict[str, float] = {}
        self._lock = threading.Lock()

    def acquire(self, key: str) -> float:
        """Reserve the next slot for `key`, sleep until it, and return the seconds waited."""
        with self._lock:
            now = self._clock()
            slot = max(now, self._next.get(key, now))
            self._next[key] = slot + self.interval
        delay = slot - now
        if delay > 0:
            self._sleep(delay)
        return delay


class RdapHandler(urllib.request.BaseHandler):
    """urllib pre-processor: rate-limit per registry, then optionally redirect to a base URL."""

    handler_order = 100  # before the protocol handlers

    def __init__(self, limiter: RateLimiter, base_url: str | None = None) -> None:
        self.limiter = limiter
        self.base_url = base_url.rstrip("/") if base_url else None

    def _prepare(self, req: urllib.request.Request) -> urllib.request.Request:
        parts = urlsplit(req.full_url)
        host = parts.hostname or ""
        if self.base_url is not None and not req.full_url.startswith(self.base_url):
            query = f"?{parts.query}" if parts.query else ""
            req.full_url = f"{self.base_url}/{host}{parts.path}{query}"
        elif self.base_url is not None:
            host = urlsplit(req.full_url).path.lstrip("/").split("/", 1)[0]
        self.limiter.acquire(RIR_BY_HOST.get(host, host))
        return req

    http_request = _prepare
    https_request = _prepare


def _walk_entities(node: Any) -> Iterator[Mapping[str, Any]]:
    if isinstance(node, Mapping):
        for ent in node.get("entities") or ():
            if isinstance(ent, Mapping):
                yield ent
                yield from _walk_entities(ent)


def abuse_emails(raw: Any) -> tuple[str, ...]:
    """Collect the e-mail addresses of entities with the `abuse` role, at any depth."""
    found: list[str] = []
    for ent in _walk_entities(raw):
        roles = ent.get("roles") or ()
        if "abuse" not in roles:
            continue
        vcard = ent.get("vcardArray")
        items = vcard[1] if isinstance(vcard, list) and len(vcard) > 1 else ()
        for item in items if isinstance(items, list) else ():
            if isinstance(item, list) and len(item) > 3 and item[0] == "email":
                value = item[3]
                if isinstance(value, str) and value not in found:
                    found.append(value)
    return tuple(found)


def owner_from_result(result: Mapping[str, Any]) -> Owner:
    """Turn an ipwhois lookup_rdap result (with `raw`) into an Owner."""
    net = result.get("network") or {}
    cidr = net.get("cidr")
    return Owner(
        status="ok",
        name=net.get("name") or None,
        handle=net.get("handle") or None,
        cidr=cidr.split(",")[0].strip() if isinstance(cidr, str) and cidr else None,
        country=net.get("country") or None,
        abuse_emails=abuse_emails(result.get("raw")),
    )


def _reason(exc: BaseException) -> tuple[str, bool]:
    """Return a one-line reason and whether the answer is definitive (cache it on disk)."""
    name = type(exc).__name__
    cause = exc.__context__
    text = str(exc)
    if name == "HTTPRateLimitError":
        return "rate limited by the registry", False
    if "error code 404" in text:
        return "no RDAP record for this address (HTTP 404)", True
    if name == "HTTPLookupError" and cause is not None:
        inner = getattr(cause, "reason", cause)
        return f"RDAP server unreachable ({inner})", False
    if name in ("HTTPLookupError", "URLError", "TimeoutError", "OSError"):
        return f"RDAP lookup failed ({text})", False
    return f"unusable RDAP answer ({name}: {text})", False


class RdapResolver:
    """Background RDAP lookups with caches; `owner()` is safe to call on every tick."""

    def __init__(
        self,
        *,
        base_url: str | None = None,
        cache_path: Path | None = None,
        workers: int = 4,
        timeout: float = 5.0,
        min_interval: float = 0.5,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.base_url = base_url if base_url is not None else os.environ.get(ENV_URL) or None
        self.timeout = timeout
        self.clock = clock
        self.limiter = RateLimiter(min_interval)
        self.cache_path = cache_path or paths.cache_dir() / "rdap.sqlite3"
        self.cache = OwnerCache.open(self.cache_path, clock=clock)
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="rdap")
        self._lock = threading.Lock()
        self._pending: dict[IPAddress, Future[Owner]] = {}
        self._known: dict[IPAddress, tuple[Owner, float]] = {}

    def owner(self, ip: IPAddress) -> Owner:
        """Return the owner if known, else start a lookup and return `pending`."""
        now = self.clock()
        with self._lock:
            known = self._known.get(ip)
            if known is not None and known[1] > now:
                return known[0]
            if ip in self._pending:
                return Owner(status="pending")
            cached = self.cache.get(ip) if self.cache is not None else None
            if cached is not None:
                self._remember(ip, cached, now)
                return cached
            if len(self._pending) >= MAX_PENDING:
                return Owner(status="pending")
            self._pending[ip] = self._pool.submit(self._resolve, ip)
        return Owner(status="pending")

    def _remember(self, ip: IPAddress, owner: Owner, now: float) -> None:
        """Keep an answer in memory for RETRY_AFTER seconds, bounded by MAX_KNOWN (lock held)."""
        self._known.pop(ip, None)
        self._known[ip] = (owner, now + RETRY_AFTER)
        while len(self._known) > MAX_KNOWN:
            del self._known[next(iter(self._known))]

    def wait(self, ips: Sequence[IPAddress], timeout: float) -> None:
        """Start lookups for `ips` and block until they are done or `timeout` passes."""
        for ip in ips:
            self.owner(ip)
        with self._lock:
            futures = [self._pending[ip] for ip in ips if ip in self._pending]
        wait_futures(futures, timeout=timeout)

    def _resolve(self, ip: IPAddress) -> Owner:
        owner, definitive = self._fetch(ip)
        now = self.clock()
        with self._lock:
            self._pending.pop(ip, None)
            self._remember(ip, owner, now)
        if definitive and self.cache is not None:
            self.cache.put(ip, owner)
        return owner

    def _fetch(self, ip: IPAddress) -> tuple[Owner, bool]:
        """One lookup through ipwhois; every failure becomes an `unknown` owner with a reason."""
        from ipwhois import IPWhois

        opener = urllib.request.build_opener(RdapHandler(self.limiter, self.base_url))
        try:
            result = IPWhois(str(ip), timeout=self.timeout, proxy_opener=opener).lookup_rdap(
                bootstrap=True,
                retry_count=0,
                depth=0,
                inc_raw=True,
                inc_nir=False,
                root_ent_check=False,
                rate_limit_timeout=0,
            )
        except Exception as exc:  # noqa: BLE001  # ipwhois raises many types; all mean "unknown"
            reason, definitive = _reason(exc)
            return Owner(status="unknown", reason=reason), definitive
        if not isinstance(result, Mapping):
            return Owner(status="unknown", reason="unusable RDAP answer"), False
        return owner_from_result(result), True

    def close(self) -> None:
        """Stop the workers (running lookups finish within their timeout) and the cache."""
        self._pool.shutdown(wait=False, cancel_futures=True)
        if self.cache is not None:
            self.cache.close()
