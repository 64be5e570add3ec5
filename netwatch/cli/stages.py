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
    from netwatch.config import Config
    from netwatch.detect.engine import RuleEngine
    from netwatch.detect.rule import RuleSet
    from netwatch.enrich.enricher import Enricher
    from netwatch.pipeline.capture_flows import CaptureFlows

log = logging.getLogger("netwatch")


def enricher(geoip_dbs: Sequence[str], rdap: bool = False) -> Enricher:
    """GeoIP/ASN/jurisdiction/list enrichment; a bad explicit `--geoip-db` is one error line."""
    from netwatch.enrich.enricher import build_enricher

    return build_enricher(geoip_dbs=[Path(p) for p in geoip_dbs], rdap=rdap)


def policy_and_rules(
    config: Path | None, *, system: bool = False, loaded: Config | None = None
) -> tuple[Config, RuleSet]:
    """The config and the bundled rule pack, checked against each other (rule ids, labels).

    `system`: the daemon's config (`--config` or /etc only; see `config.config_files`).
    `loaded`: the config already read (the daemon's analyzer has its collector read it).
    """
    from netwatch.config import load_config
    from netwatch.detect.loader import load_rules
    from netwatch.detect.policy_check import check_policy

    if loaded is None:
        loaded = load_config(config, system=system)
    rules = load_rules()
    check_policy(loaded, rules)
    return loaded, rules


def detector(
    config: Path | None,
    first_seen: Any = None,
    *,
    system: bool = False,
    loaded: Config | None = None,
    own_pids: Sequence[int] = (),
) -> RuleEngine:
    """The bundled rule pack under the policy of `config`; netwatch's own traffic is exempt
    (this process's, and `own_pids`: the daemon's collector)."""
    from netwatch.detect.engine import RuleEngine

    loaded, rules = policy_and_rules(config, system=system, loaded=loaded)
    own = frozenset({os.getpid(), *own_pids})
    if first_seen is None:
        return RuleEngine(rules, loaded.policy, own_pids=own)
    return RuleEngine(rules, loaded.policy, first_seen=first_seen, own_pids=own)


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
