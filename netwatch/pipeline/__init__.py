"""Composition of the stages: the live engine (`engine`), and offline analysis of captures.

This package is the pipeline layer of docs/architecture.md ("Import layers"): it may import every
stage below it (sources, flows, dissect, enrich, detect) and is imported by cli, daemon and nothing
else.
"""

from netwatch.pipeline.engine import (
    Detector,
    Engine,
    Enricher,
    LiveFeed,
    PacketFlows,
    SocketSource,
)

__all__ = [
    "Detector",
    "Engine",
    "Enricher",
    "LiveFeed",
    "PacketFlows",
    "SocketSource",
]
