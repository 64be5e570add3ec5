"""The stages every live command composes the same way: enrichment, rules, capture.

`snapshot`, `record`, `watch` and `daemon` call these so a flag means the same thing
everywhere (`--geoip-db`, `--config`, `--rdap`, capture on when privileged). Imports stay
inside the functions so `--help` does not load geoip2, scapy or the rule pack.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from netwatch.detect.engine import RuleEngine
    from netwatch.enrich.enricher import Enricher
    from netwatch.pipeline.capture_flows import CaptureFlows

log = logging.getLogger("netwatch")


def enricher(geoip_dbs: Sequence[str], rdap: bool = False) -> Enricher:
    """GeoIP/ASN/jurisdiction/list enrichment; a bad explicit `--geoip-db` is one error line."""
    from netwatch.enrich.enricher import build_enricher

    return build_enricher(geoip_dbs=[Path(p) for p in geoip_dbs], rdap=rdap)


def detector(config: Path | None, first_seen: Any = None) -> RuleEngine:
    """The bundled rule pack under the policy of `config`; netwatch's own traffic is exempt."""
    from netwatch.config import load_config
    from netwatch.detect.engine import RuleEngine
    from netwatch.detect.loader import load_rules

    policy = load_config(config).policy
    own = frozenset({os.getpid()})
    if first_seen is None:
        return RuleEngine(load_rules(), policy, own_pids=own)
    return RuleEngine(load_rules(), policy, first_seen=first_seen, own_pids=own)


def capture(interface: str | None = None, enabled: bool = True) -> CaptureFlows | None:
    """Live packet capture when privileges allow; otherwise None, and the status says why."""
    if not enabled:
        return None
    from netwatch.errors import CaptureUnavailableError
    from netwatch.pipeline.capture_flows import CaptureFlows

    try:
        return CaptureFlows.open(interface)
    except CaptureUnavailableError as exc:
        log.info("packet capture off: %s", exc)
        return None
