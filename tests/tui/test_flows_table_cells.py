"""FlowsTable draws a plain cell itself, and remembers drawn cells by their look: both must be
exactly what DataTable's own renderer draws (text and style of every character, including
the click metadata), for every kind of cell: cropped, padded, right-justified, wide
characters, the VPN style, the cursor and hover rows, zebra stripes."""

from __future__ import annotations

import pytest
from rich.segment import Segment
from rich.style import Style
from textual.coordinate import Coordinate
from textual.strip import Strip
from textual.widgets import DataTable

from netwatch.model import Direction
from netwatch.ui.app import NetwatchApp
from netwatch.ui.widgets.flows_table import FlowsTable
from tests.builders import make_flow, make_label, make_process, make_remote, make_snapshot
from tests.tui.helpers import NOW, StepFeed, wait_for

pytestmark = pytest.mark.tui


def _flows() -> tuple:
    return (
        make_flow(
            "90.189.249.23",
            443,
            local_port=1000,
            process=make_process("a-process-name-far-too-long-for-its-column", pid=123456),
            label=make_label("openvpn", "vpn", vpn=True),
            remote=make_remote("90.189.249.23", "RU", 12389, "PJSC Rostelecom", ("14 Eyes",)),
            sni="a.very.long.server.name.that.does.not.fit.example.net",
            bytes_received=12_345_678_901,
        ),
        make_flow("140.82.112.3", 443, local_port=2000, process=make_process("curl", pid=7)),
        *(  # the same VPN badge at other rows (of both stripes): drawn from the cache of looks
            make_flow(
                "90.189.249.24",
                1194,
                local_port=port,
                label=make_label("openvpn", "vpn", vpn=True),
            )
            for port in (1001, 1002)
        ),
        make_flow(
            None,
            0,
            local_ip="0.0.0.0",
            local_port=22,
            direction=Direction.LISTEN,
            bytes_sent=None,
            bytes_received=None,
        ),
        make_flow("2a00:1450:4001:82b::200e", 443, local_ip="2a02:8109::1", local_port=3000),
        make_flow("10.0.0.1", 53, local_port=4000, process=make_process("名前", pid=1)),
    )


def _drawn(lines: list[list[Segment]]) -> list[tuple[str, Style | None]]:
    """One character per entry with its style, so segment boundaries do not matter."""
    out = []
    for line in lines:
        for seg in Strip(line).simplify():
            out += [(ch, seg.style) for ch in seg.text]
    return out


async def test_cells_are_drawn_as_datatable_draws_them() -> None:
    feed = StepFeed()
    app = NetwatchApp(feed, now=lambda: NOW)
    async with app.run_test(size=(200, 30)) as pilot:
        table = app.query_one(FlowsTable)
        feed.push(make_snapshot(seq=1, flows=_flows()))
        await wait_for(pilot, lambda: len(table.order) == 7)
        table.hover_coordinate = Coordinate(2, 0)
        await pilot.pause()
        compared = 0
        for row in range(len(table.order)):
            row_style = table._get_row_style(row, table.rich_style)
            for column, spec in enumerate(table.ordered_columns):
                width = spec.get_render_width(table)
                for cursor in (False, True):
                    for hover in (False, True):
                        for _ in range(2):  # drawn, then from the cache of looks
                            ours = table._render_cell(row, column, row_style, width, cursor, hover)
                            theirs = DataTable._render_cell(
                                table, row, column, row_style, width, cursor, hover
                            )
                            assert _drawn(ours) == _drawn(theirs), (row, column, cursor, hover)
                            compared += 1
        assert compared == 7 * len(table.ordered_columns) * 8
