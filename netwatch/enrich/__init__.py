"""Enrichment: what is known about a remote address (geo, ASN, owner, jurisdiction, lists)."""
