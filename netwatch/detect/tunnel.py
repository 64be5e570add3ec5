"""The tunnel going down while traffic goes on in the clear: the `tunnel_down` Python rule.

A VPN without a kill switch (VPN Gate's clients among them, as its own pages say) lets
programs carry on by the physical interface when the tunnel drops, with the user's real
address. Whether the tunnel is up comes from the host facts (a `[policy.tunnel]` interface
exists); once it was up and is gone, every flow that sends by a non-tunnel interface is
reported with how much it sent in the clear since the tunnel went down, updated each tick
until the tunnel comes back. Flows' interfaces come from capture (`Flow.interface`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime

from netwatch.detect.fields import Env
from netwatch.detect.novelty import FirstSeenStore, Selected
from netwatch.detect.policy import glob_any
from netwatch.model import EnrichedFlow, Evidence, FlowKey


class TunnelDown:
    """Remembers whether the tunnel was up, since when it is down, and how much each flow
    outside the tunnel had sent at the last tick the tunnel was up (what it sent before is
    not counted as "in the clear"; a flow not seen then sent everything in the clear)."""

    incremental = False
    """Every matching flow every tick: a flow keeps sending while the tunnel stays down."""
    repeats = True
    """Each tick's bytes in the clear are news: the alert's evidence follows them."""

    def __init__(self, _store: FirstSeenStore | None = None) -> None:
        self._was_up = False
        self._down_since: float | None = None
        self._sent_before: dict[FlowKey, int] = {}
        """While up: this tick's flows outside the tunnel (few: the tunnel carries the rest)
        and what they had sent. While down: the same, as it was when the tunnel went."""

    def select(self, flows: Sequence[EnrichedFlow], env: Env) -> Iterable[Selected]:
        """Flows sending by a non-tunnel interface since a tunnel that was up went away."""
        globs = env.policy.tunnel_interfaces()
        if env.host is None or globs is None:
            return
        outside = [ef for ef in flows if _outside(ef, globs)]
        if env.policy.tunnel_present(env.host):
            self._was_up, self._down_since = True, None
            self._sent_before = {ef.flow.key: ef.flow.bytes_sent or 0 for ef in outside}
            return
        if not self._was_up:
            return
        if self._down_since is None:
            self._down_since = env.now
        since = self._down_since
        stamp = datetime.fromtimestamp(since, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        for ef in outside:
            f = ef.flow
            if f.last_seen is None or f.last_seen < since:
                continue  # nothing sent since the tunnel went down
            sent = f.bytes_sent or 0
            before = self._sent_before.setdefault(f.key, 0)
            if sent <= before:
                continue
            yield (
                ef,
                (
                    Evidence("tunnel_down_since", stamp),
                    Evidence("sent_in_clear", str(sent - before)),
                ),
            )


def _outside(ef: EnrichedFlow, globs: tuple[str, ...]) -> bool:
    """Whether the flow left by a known interface that is neither loopback nor a tunnel."""
    iface = ef.flow.interface
    return iface is not None and iface != "lo" and not glob_any(iface, globs)
