"""The webhook channel: an HTTP POST per note, in one of three body shapes, retried.

Shapes: `json` (the note as `Note.to_dict`), `ntfy` (the text as the body, with ntfy's
`Title`, `Priority` and `Tags` headers: https://docs.ntfy.sh/publish/) and `slack` (a
Slack-compatible incoming webhook's `{"text": ...}`: https://api.slack.com/messaging/webhooks).
A failed POST is tried again `retries` times, waiting `backoff` seconds and doubling; it runs
in the channel's worker thread, never on a tick. A webhook URL is a credential (a Slack path,
an ntfy topic, a token in the query or userinfo), so only `redact(url)` is ever logged.
"""

from __future__ import annotations

import base64
import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from urllib.parse import unquote, urlsplit, urlunsplit

from netwatch.model import Severity
from netwatch.notify.note import Note

NTFY_PRIORITY = {
    Severity.INFO: "2",
    Severity.LOW: "2",
    Severity.MEDIUM: "3",
    Severity.HIGH: "4",
    Severity.CRITICAL: "5",
}
"""ntfy's priorities: 1 min, 2 low, 3 default, 4 high, 5 urgent."""

BACKOFF_MAX = 60.0


def redact(url: str) -> str:
    """The URL with everything that may be secret left out: `https://host:port/…`.

    Userinfo, the path (Slack's and ntfy's secret is there) and the query all go.
    """
    parts = urlsplit(url)
    host = parts.hostname or "?"
    if ":" in host:
        host = f"[{host}]"
    try:
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        port = ""
    tail = "/…" if parts.path not in ("", "/") or parts.query else ""
    return f"{parts.scheme}://{host}{port}{tail}"


def _split_userinfo(url: str) -> tuple[str, str | None]:
    """The URL without `user:password@`, and that as a Basic `Authorization` value.

    urllib takes no credentials from a URL; a receiver behind basic auth (ntfy with access
    control, a reverse proxy) is given them the way a browser would.
    """
    parts = urlsplit(url)
    if parts.username is None:
        return url, None
    user = unquote(parts.username)
    password = unquote(parts.password or "")
    netloc = parts.netloc.rpartition("@")[2]
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return urlunsplit(parts._replace(netloc=netloc)), f"Basic {token}"


def _header_text(text: str) -> str:
    """A header value: ASCII as it is, else RFC 2047 (ntfy decodes it)."""
    flat = " ".join(text.split())
    if flat.isascii():
        return flat
    return "=?UTF-8?B?" + base64.b64encode(flat.encode()).decode() + "?="


def request_parts(note: Note, shape: str) -> tuple[bytes, dict[str, str]]:
    """The body and headers of `note` in `shape`."""
    if shape == "ntfy":
        rules = sorted({a.rule_id for a in note.alerts})[:5]
        headers = {
            "Content-Type": "text/plain; charset=utf-8",
            "Title": _header_text(note.title),
            "Priority": NTFY_PRIORITY[note.severity],
            "Tags": ",".join(["netwatch", note.severity.value, *rules]),
        }
        return note.body.encode(), headers
    if shape == "slack":
        text = f"*{note.title}*\n{note.body}"
        return json.dumps({"text": text}).encode(), {"Content-Type": "application/json"}
    return note.to_json().encode(), {"Content-Type": "application/json"}


class WebhookChannel:
    """POSTs each note to `url`; retries with doubling waits."""

    def __init__(
        self,
        url: str,
        shape: str = "json",
        *,
        retries: int = 3,
        timeout: float = 5.0,
        backoff: float = 1.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._url, self._auth = _split_userinfo(url)
        self.shape = shape
        self.retries = retries
        self.timeout = timeout
        self.backoff = backoff
        self._sleep = sleep
        self.name = f"webhook:{redact(url)}"
        self.attempts = 0
        # No proxy from the environment: the daemon's environment is systemd's, and a
        # receiver on this machine or the LAN must not be sent through someone's proxy.
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def send(self, note: Note) -> None:
        """POST; raise OSError (naming only the redacted URL) once every try failed."""
        body, headers = request_parts(note, self.shape)
        if self._auth:
            headers["Authorization"] = self._auth
        wait = self.backoff
        problem, attempt = "", 0
        for attempt in range(self.retries + 1):
            if attempt:
                self._sleep(wait)
                wait = min(wait * 2, BACKOFF_MAX)
            self.attempts += 1
            req = urllib.request.Request(  # noqa: S310  # the config accepts http(s) URLs only
                self._url, data=body, headers=headers, method="POST"
            )
            try:
                with self._opener.open(req, timeout=self.timeout) as resp:
                    resp.read(65536)
                return
            except urllib.error.HTTPError as exc:
                problem = f"HTTP {exc.code}"
                exc.close()
                if 400 <= exc.code < 500 and exc.code not in (408, 429):
                    break  # the receiver refuses this request; sending it again will not help
            except (urllib.error.URLError, OSError) as exc:
                # Only the kind of failure: str(exc) of some errors repeats the URL.
                reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
                problem = type(reason).__name__ if isinstance(reason, BaseException) else "error"
                if isinstance(reason, OSError) and reason.strerror:
                    problem = reason.strerror
        raise OSError(f"{attempt + 1} tries, last: {problem}")

    def close(self) -> None:
        """Nothing is kept open between notes."""
