"""Pilot test: the flow and alert details of a VPN Gate flow say who runs it (issue 15).

The provider comes from the bundled facts file (`enrich/providers.toml`) through the real
loader, on the flow's remote info as the enricher attaches it; the screens are the app's.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from netwatch.enrich.providers import bundled
from netwatch.feed import ReplayFeed
from netwatch.model import Severity
from netwatch.ui.app import NetwatchApp
from netwatch.ui.screens.text_screen import TextScreen
from tests.builders import make_alert, make_flow, make_process, make_remote, make_snapshot
from tests.tui.helpers import NOW

pytestmark = pytest.mark.tui


async def test_flow_and_alert_details_show_the_provider_its_country_and_record() -> None:
    vpngate = bundled().named("vpngate")
    assert vpngate is not None
    remote = replace(make_remote("203.0.113.9", country="JP"), provider=vpngate)
    flow = make_flow(remote_ip="203.0.113.9", process=make_process("vpnclient"), remote=remote)
    alert = replace(
        make_alert("vpn.unexpected", Severity.HIGH, "vpnclient uses VPN Gate"),
        flow_key=flow.flow.key,
        remote=remote,
        process=flow.flow.process,
    )
    feed = ReplayFeed([make_snapshot(flows=(flow,), alerts=(alert,), taken_at=NOW)])
    app = NetwatchApp(feed, now=lambda: NOW)
    async with app.run_test(size=(120, 60)) as pilot:
        await app.workers.wait_for_complete()
        await pilot.pause()
        await pilot.press("enter")  # the only flow
        assert isinstance(app.screen, TextScreen)
        flow_text = app.screen.body.plain
        await pilot.press("escape", "a", "enter")
        assert isinstance(app.screen, TextScreen)
        alert_text = app.screen.body.plain
    for text in (flow_text, alert_text):
        assert "Provider" in text
        assert vpngate.operator in text and "University of Tsukuba" in text
        assert "JP" in text
        assert vpngate.logging in text
        for i in vpngate.incidents:
            assert i.url in text
        if not vpngate.audits:
            assert "none published" in text
