"""One byte scale for the dashboard, `snapshot` and alert messages (model.units)."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from netwatch.model import units


def test_the_seed_case_reads_as_reported() -> None:
    assert units.long(5) == "5 B" and units.long(4200) == "4.2 KB"
    assert units.short(5) == "5B" and units.short(4200) == "4.2K"
    assert units.long(999) == "999 B" and units.long(1000) == "1.0 KB"
    assert units.long(13_400_000) == "13 MB" and units.short(13_400_000) == "13M"
    assert units.long(None) == "? B" and units.short(None) == "-"
    # What would round up to 1000 of a unit is shown in the next one.
    assert units.long(999_950) == "1.0 MB" and units.short(999_950) == "1.0M"
    assert units.long(9_960) == "10 KB" and units.short(9_960) == "10K"


@given(st.integers(min_value=0, max_value=10**18 - 1))
def test_short_fits_a_column_and_long_says_the_same_number(n: int) -> None:
    s, long_ = units.short(n), units.long(n)
    assert len(s) <= 5, s
    number, unit = re.fullmatch(r"([\d.]+) ([KMGTP]?B)", long_).groups()  # type: ignore[union-attr]
    assert s == f"{number}{unit[0] if unit != 'B' else 'B'}"


def test_every_surface_uses_the_same_scale() -> None:
    """The dashboard column, `snapshot` and the alert message agree (they once did not)."""
    from netwatch.cli.snapshot import table_row
    from netwatch.detect.fields import Env
    from netwatch.detect.messages import flow_values
    from netwatch.detect.policy import PolicyView
    from netwatch.ui import fmt
    from tests.builders import make_flow

    ef = make_flow(bytes_sent=4200, bytes_received=1_500_000)
    row = table_row(ef, geo=False)
    assert "4.2K" in row and "1.5M" in row
    assert fmt.size(ef.flow.bytes_sent) == "4.2K"
    values = flow_values(ef, Env(PolicyView(), 0.0))
    assert (values["up"], values["down"]) == ("4.2 KB", "1.5 MB")
