"""Composition root of the engine: sources -> flows -> enrich -> detect, one Snapshot per tick."""
