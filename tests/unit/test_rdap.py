"""RDAP owner lookups against a local HTTP server that answers like ARIN's bootstrap and RIPE.

The server is the "outside" (a registry); everything on our side is real: ipwhois, our urllib
handler (base-URL rewrite, per-registry rate limit), the worker pool and the SQLite cache.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from netwatch.enrich.enricher import Enricher
from netwatch.enrich.geo import GeoDatabase, Origin
from netwatch.enrich.geo_paths import bundled_path
from netwatch.enrich.rdap import RateLimiter, RdapResolver, abuse_emails
from netwatch.model import Owner, parse_ip


def ripe_network(ip: str) -> dict[str, Any]:
    return {
        "objectClassName": "ip network",
        "handle": "90.189.128.0 - 90.189.255.255",
        "startAddress": "90.189.128.0",
        "endAddress": "90.189.255.255",
        "ipVersion": "v4",
        "name": "RU-SIBIRTELECOM",
        "type": "ASSIGNED PA",
        "country": "RU",
        "entities": [
            {
                "handle": "ORG-1",
                "roles": ["registrant"],
                "vcardArray": ["vcard", [["fn", {}, "text", "Rostelecom"]]],
                "entities": [
                    {
                        "handle": "ABUSE-1",
                        "roles": ["abuse"],
                        "vcardArray": [
                            "vcard",
                            [["fn", {}, "text", "Abuse"], ["email", {}, "text", "abuse@rt.ru"]],
                        ],
                    }
                ],
            }
        ],
    }


class Registry(BaseHTTPRequestHandler):
    """ARIN bootstrap redirects to RIPE for 90.189/16 and answers 404 for the rest."""

    hits: list[tuple[float, str]] = []

    def do_GET(self) -> None:  # noqa: N802  # http.server's naming
        Registry.hits.append((time.monotonic(), self.path))
        host, _, rest = self.path.lstrip("/").partition("/")
        ip = rest.rsplit("/", 1)[-1]
        if host == "rdap-bootstrap.arin.net" and ip.startswith("90.189."):
            self.send_response(302)
            self.send_header("Location", f"https://rdap.db.ripe.net/ip/{ip}")
            self.end_headers()
            return
        if host == "rdap.db.ripe.net":
            body = json.dumps(ripe_network(ip)).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/rdap+json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        if ip.startswith("1.2."):  # a registry that hangs: the client's timeout must end it
            time.sleep(3)
        self.send_response(404)
        self.end_headers()

    def log_message(self, *_args: Any) -> None:
        return


@pytest.fixture
def registry() -> Iterator[str]:
    Registry.hits = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Registry)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def resolver(base: str, tmp_path: Path, **kw: Any) -> RdapResolver:
    kw.setdefault("min_interval", 0.0)
    return RdapResolver(base_url=base, cache_path=tmp_path / "rdap.sqlite3", **kw)


def test_owner_is_pending_then_known_with_abuse_contact(registry: str, tmp_path: Path) -> None:
    r = resolver(registry, tmp_path)
    ip = parse_ip("90.189.249.23")
    assert r.owner(ip) == Owner(status="pending")
    r.wait([ip], timeout=10)
    owner = r.owner(ip)
    assert owner.status == "ok"
    assert (owner.name, owner.country, owner.cidr) == ("RU-SIBIRTELECOM", "RU", "90.189.128.0/17")
    assert owner.handle == "90.189.128.0 - 90.189.255.255"
    assert owner.abuse_emails == ("abuse@rt.ru",)
    paths = [p for _, p in Registry.hits]
    assert paths == [
        "/rdap-bootstrap.arin.net/bootstrap/ip/90.189.249.23",
        "/rdap.db.ripe.net/ip/90.189.249.23",
    ]
    r.close()


def test_disk_cache_survives_a_restart_and_covers_the_network(
    registry: str, tmp_path: Path
) -> None:
    first = resolver(registry, tmp_path)
    first.wait([parse_ip("90.189.249.23")], timeout=10)
    first.close()
    Registry.hits.clear()
    second = resolver(registry, tmp_path)
    assert second.owner(parse_ip("90.189.249.23")).name == "RU-SIBIRTELECOM"
    assert second.owner(parse_ip("90.189.130.1")).name == "RU-SIBIRTELECOM"  # same /17
    assert Registry.hits == []
    second.close()


def test_cache_expires_after_seven_days(registry: str, tmp_path: Path) -> None:
    now = [1_800_000_000.0]
    r = resolver(registry, tmp_path, clock=lambda: now[0])
    r.wait([parse_ip("90.189.249.23")], timeout=10)
    r.close()
    now[0] += 7 * 24 * 3600 + 1
    later = resolver(registry, tmp_path, clock=lambda: now[0])
    assert later.owner(parse_ip("90.189.249.23")).status == "pending"
    later.close()


def test_404_is_unknown_and_negatively_cached(registry: str, tmp_path: Path) -> None:
    r = resolver(registry, tmp_path)
    ip = parse_ip("8.8.8.8")
    r.wait([ip], timeout=10)
    owner = r.owner(ip)
    assert owner.status == "unknown"
    assert owner.reason is not None and "404" in owner.reason
    count = len(Registry.hits)
    assert r.owner(ip) == owner
    assert len(Registry.hits) == count  # not asked again
    r.close()


def test_missing_server_is_unknown_with_reason_quickly(tmp_path: Path) -> None:
    with socket.socket() as s:  # a port with nothing listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    r = resolver(f"http://127.0.0.1:{port}", tmp_path)
    ip = parse_ip("90.189.249.23")
    started = time.monotonic()
    r.wait([ip], timeout=10)
    owner = r.owner(ip)
    assert time.monotonic() - started < 5
    assert owner.status == "unknown"
    assert owner.reason is not None and "unreachable" in owner.reason
    r.close()


def test_hanging_server_is_bounded_by_the_timeout(registry: str, tmp_path: Path) -> None:
    r = resolver(registry, tmp_path, timeout=0.5)
    ip = parse_ip("1.2.3.4")
    started = time.monotonic()
    r.wait([ip], timeout=10)
    assert time.monotonic() - started < 2.5
    owner = r.owner(ip)
    assert owner.status == "unknown" and owner.reason
    r.close()


def test_requests_to_one_registry_are_spaced(registry: str, tmp_path: Path) -> None:
    r = resolver(registry, tmp_path, min_interval=0.3)
    ips = [parse_ip(f"90.189.{i}.1") for i in (1, 2, 3)]  # distinct, not yet cached
    r.cache = None  # each one goes to the registries
    r.wait(ips, timeout=15)
    starts = sorted(t for t, p in Registry.hits if p.startswith("/rdap.db.ripe.net/"))
    assert len(starts) == 3
    gaps = [b - a for a, b in zip(starts, starts[1:], strict=False)]
    assert all(g >= 0.25 for g in gaps), gaps
    r.close()


def test_rate_limiter_with_a_fake_clock() -> None:
    now = [100.0]
    slept: list[float] = []

    def sleep(d: float) -> None:
        slept.append(d)

    limiter = RateLimiter(1.0, clock=lambda: now[0], sleep=sleep)
    assert limiter.acquire("ripe") == 0
    assert limiter.acquire("ripe") == 1.0
    assert limiter.acquire("arin") == 0  # per registry
    now[0] += 5
    assert limiter.acquire("ripe") == 0
    assert slept == [1.0]


def test_abuse_emails_tolerates_odd_json() -> None:
    assert abuse_emails({"entities": [None, {"roles": ["abuse"], "vcardArray": "x"}]}) == ()
    assert abuse_emails([1, 2]) == ()


def test_enricher_reports_pending_then_owner(registry: str, tmp_path: Path) -> None:
    path = bundled_path()
    assert path is not None
    r = resolver(registry, tmp_path)
    enricher = Enricher([GeoDatabase.open(path, Origin.BUNDLED)], rdap=r)
    first = enricher.remote_info("90.189.249.23")
    assert first.owner == Owner(status="pending")
    assert first.country == "RU"
    r.wait([parse_ip("90.189.249.23")], timeout=10)
    assert enricher.remote_info("90.189.249.23").owner.name == "RU-SIBIRTELECOM"  # type: ignore[union-attr]
    assert enricher.remote_info("192.168.1.5").owner is None  # never asked for local addresses
    enricher.close()
