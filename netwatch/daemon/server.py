"""The daemon's Unix socket: the snapshot stream (`netwatch.stream`) to every client.

Non-blocking and driven by the service loop's `poll`, so no thread and no lock. The server
moves frames and knows two kinds: the greeting (a `state` record, asked of the service when
a client needs one) and the broadcast lines (each tick's `delta`, the same bytes for every
client). A client that has had no greeting yet (it connected before the first tick) gets
the greeting instead of a broadcast. A client that lets its buffer grow past `max_buffer`
plus three greetings (it reads too slowly) is never waited for and never dropped for it: what
it has pending is discarded (but the rest of a frame it is in the middle of) and it gets a
fresh greeting, a resync (`resyncs` counts them). The socket file is created 0660 (umask set
before bind, so there is no window where it is wider) and given to root and the `netwatch`
group when that group exists; everyone else gets EACCES on connect.

Clients that only read get the stream. A client that sends is asking the past
(`history_wire`, when the service took requests with `set_requests`): from its first byte it
gets no more stream (what is queued for it is dropped, but the rest of a frame it is in the
middle of), and each line it sends (at most `history_wire.MAX_REQUEST` bytes) goes to the
request handler, whose answers are queued to it alone. A client that sends before it is
accepted (a request right after connect, as `DaemonHistory` does) is never greeted with a
`state` at all. Each line that is not a good request is answered with an error record;
past `MAX_BAD` of them (or requests refused as too many) the client is closed.

A client that connects and closes in a tight loop must not take the daemon's core: accepts
are taken in bounded batches (`ACCEPT_BATCH`, the loop gets back to its ticks in between),
each peer uid may open `PEER_RATE` connections a second after a burst of `PEER_BURST`
(`_PeerLimit`), and a connection over that, or past `MAX_CLIENTS`, is closed at once,
without a greeting, and the socket is not listened to for `COOLDOWN` seconds. Waiting
connects queue in the backlog meanwhile, which is `LISTEN_BACKLOG` long on purpose.
"""

from __future__ import annotations

import contextlib
import logging
import os
import selectors
import socket
import struct
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

from netwatch import codec, files, history_wire
from netwatch.errors import NetwatchError

log = logging.getLogger("netwatch.daemon")

MAX_BUFFER = 16 * 1024 * 1024
MAX_CLIENTS = 64
SLACK_STATES = 3
"""A client may lag this many greetings' worth of bytes, however large one is (a `state` of
10,000 flows is ~7 MB), before it is resynced."""
LISTEN_BACKLOG = MAX_CLIENTS
"""Connects the kernel queues until accepted: every client reconnecting at once after a
restart fits; more would only queue up a storm's connections for the daemon to close."""
ACCEPT_BATCH = LISTEN_BACKLOG
"""Most connections accepted per `poll` event: a full backlog, then back to the loop."""
PEER_RATE = 10.0
"""Connections a second one peer uid may open after its burst (a dashboard opens one,
`netwatch watch` two: a probe and the feed)."""
PEER_BURST = 20
"""Connections one peer uid may open at once."""
COOLDOWN = 0.2
"""Seconds the socket is not listened to after a connection was refused; bounds the work a
storm can cause to one backlog per `COOLDOWN`. Others' connects wait that long at most."""
QUIET = 60.0
"""Seconds without a refusal after which the next one is logged again."""
MAX_BAD = 16
"""Bad requests (not JSON, malformed, or past the queue's bounds: each answered with an error
record) a client may send; the next one closes it."""
_UCRED = struct.Struct("3i")
"""struct ucred of SO_PEERCRED: pid, uid, gid."""


RequestHandler = Callable[[int, codec.JSONDict], bytes | None]
"""(client, record) -> a framed record to send it at once, or None (an answer comes later)."""


class _PeerLimit:
    """A token bucket per peer uid: `PEER_BURST` connections, refilled at `PEER_RATE` a second.

    Only root and the socket's group can connect (mode 0660), so the uids are few and the
    buckets are never trimmed.
    """

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._buckets: dict[int, tuple[float, float]] = {}
        """uid -> (tokens, when they were counted)."""

    def allow(self, uid: int) -> bool:
        """Whether `uid` may open one more connection now (and count it if so)."""
        now = self._clock()
        tokens, then = self._buckets.get(uid, (float(PEER_BURST), now))
        tokens = min(float(PEER_BURST), tokens + (now - then) * PEER_RATE)
        ok = tokens >= 1.0
        self._buckets[uid] = (tokens - 1.0 if ok else tokens, now)
        return ok


def _peer_uid(sock: socket.socket) -> int:
    """The uid of the process at the other end (SO_PEERCRED; the kernel vouches for it);
    -1, one shared bucket, in the unlikely case the kernel cannot say."""
    try:
        cred = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
    except OSError:
        return -1
    _pid, uid, _gid = _UCRED.unpack(cred)
    return int(uid)


class _Client:
    """One connected client and what is queued for it.

    Frames are queued as they are (a `state` of 10,000 flows is ~7 MB), never copied into
    one growing buffer: the first is sent from a moving view until it is gone.
    """

    __slots__ = (
        "asking",
        "bad",
        "greeted",
        "name",
        "partial",
        "pending",
        "queue",
        "reader",
        "resyncs",
        "serial",
        "sock",
    )

    def __init__(self, sock: socket.socket, name: str, serial: int) -> None:
        self.sock = sock
        self.name = name
        self.serial = serial
        """Names the client to the request handler (fds are reused; this is not)."""
        self.asking = False
        """It sent something: it asks history requests and gets no stream."""
        self.reader: codec.FrameReader | None = None
        self.bad = 0
        """Requests it sent that were answered with an error at once (`MAX_BAD`)."""
        self.queue: deque[memoryview] = deque()
        self.pending = 0
        """Bytes queued and not yet sent."""
        self.partial = False
        """The first queued frame is partly sent: it must be finished whatever happens."""
        self.greeted = False
        """It had its greeting (broadcast lines before that would mean nothing to it)."""
        self.resyncs = 0


def socket_answers(path: Path, timeout: float = 0.5) -> bool:
    """Whether a daemon accepts connections on `path` (cli uses it to pick a feed)."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(str(path))
    except OSError:
        return False
    finally:
        s.close()
    return True


class SnapshotServer:
    """Listens on `path`; `broadcast` queues a line for every client, `poll` moves bytes."""

    def __init__(
        self,
        path: Path,
        max_buffer: int = MAX_BUFFER,
        *,
        make_dir: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Bind `path`; its folder must exist unless `make_dir` (the default socket only).

        A folder named on the command line that is missing is a mistake (a typo, a runtime
        dir not yet made) to report, not to create with whatever owner and mode result.
        """
        self.path = path
        self.max_buffer = max_buffer
        self.resyncs = 0
        """Times a client that fell behind had its pending data replaced by a greeting."""
        self._greeting_size = 0
        """Bytes of the last greeting queued (a client may lag `SLACK_STATES` of them)."""
        self.refused = 0
        """Connections closed at once: over their uid's rate, or past `MAX_CLIENTS`."""
        self._clock = clock
        self._limit = _PeerLimit(clock)
        self._last_refusal = float("-inf")
        self._deaf_until: float | None = None
        """While set, the listener is out of the selector until this time (`COOLDOWN`)."""
        self._clients: dict[int, _Client] = {}
        self._by_serial: dict[int, _Client] = {}
        self._serials = 0
        self._requests: RequestHandler | None = None
        self._gone: Callable[[int], None] | None = None
        self._sel = selectors.DefaultSelector()
        self._greeting: Callable[[], bytes | None] | None = None
        self._listener = self._bind(path, make_dir)
        self._sel.register(self._listener, selectors.EVENT_READ, "listen")
        self._wakeups: list[socket.socket] = []

    def _bind(self, path: Path, make_dir: bool) -> socket.socket:
        if not path.parent.is_dir():
            if not make_dir:
                raise NetwatchError(f"cannot create socket {path}: no directory {path.parent}")
            files.make_dirs(path.parent, shared=True)  # 0750 root:netwatch, or 0700
        if path.exists() or path.is_symlink():
            if socket_answers(path):
                raise NetwatchError(f"another netwatch daemon is already serving {path}")
            path.unlink()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o117)
        try:
            sock.bind(str(path))
        except OSError as exc:
            sock.close()
            raise NetwatchError(f"cannot create socket {path}: {exc.strerror or exc}") from None
        finally:
            os.umask(old)
        os.chmod(path, 0o660)
        self._chown(path)
        sock.listen(LISTEN_BACKLOG)
        sock.setblocking(False)
        return sock

    @staticmethod
    def _chown(path: Path) -> None:
        gid = files.group_id()
        if gid is not None and os.geteuid() == 0:
            os.chown(path, 0, gid)

    def add_wakeup(self, sock: socket.socket) -> None:
        """Make `poll` return when `sock` becomes readable (the signal wakeup fd)."""
        self._sel.register(sock, selectors.EVENT_READ, "wakeup")
        self._wakeups.append(sock)

    @property
    def clients(self) -> int:
        """How many clients are connected."""
        return len(self._clients)

    def set_greeting(self, make: Callable[[], bytes | None]) -> None:
        """What a client receives first, and again when it fell behind: the stream's
        `state` (None while there is none). Asked on connect and on resync, so `make` should
        be cheap to call again (the service builds it once per tick). Without a greeting
        every client gets the broadcast lines from its first."""
        self._greeting = make

    def set_requests(self, handle: RequestHandler, gone: Callable[[int], None]) -> None:
        """Take clients' history requests: `handle(client, record)` gets each line a client
        sends (a framed record back is sent to it at once); `gone(client)` is told when a
        client closes. Without it what clients send is discarded."""
        self._requests, self._gone = handle, gone

    def answer(self, client: int, line: bytes) -> None:
        """Queue `line` (a framed answer) for `client`, if it is still connected."""
        got = self._by_serial.get(client)
        if got is not None and got.sock.fileno() >= 0:
            self._queue(got, line)

    def broadcast(self, line: bytes) -> None:
        """Queue one line for every greeted client (a greeting for the others) and try to
        send it at once; clients asking history get none."""
        for client in list(self._clients.values()):
            if client.asking:
                continue
            if client.greeted:
                self._queue(client, line)
            else:
                self._greet(client)

    def _greet(self, client: _Client) -> None:
        """Queue the greeting, if there is one yet; the client is greeted from then on."""
        first = self._greeting() if self._greeting else None
        if self._greeting is None or first:
            client.greeted = True
        if first:
            self._greeting_size = len(first)
            self._queue(client, first)

    def _queue(self, client: _Client, data: bytes) -> None:
        client.queue.append(memoryview(data))
        client.pending += len(data)
        if client.pending > SLACK_STATES * max(self._greeting_size, len(data)) + self.max_buffer:
            if client.asking:
                # It asks and does not read its answers: no state would resync it.
                log.debug("client %s does not read its history answers: closed", client.name)
                self._close(client)
                return
            self._resync(client)
        self._flush(client)

    def _resync(self, client: _Client) -> None:
        """The client fell behind: discard what it has pending, but the rest of a frame it
        is in the middle of, and queue a fresh greeting. Never waits, never drops it."""
        queue = client.queue
        kept = queue[0] if client.partial and queue else None
        queue.clear()
        client.pending = 0
        if kept is not None:
            queue.append(kept)
            client.pending = len(kept)
        self.resyncs += 1
        client.resyncs += 1
        log_at = logging.WARNING if client.resyncs == 1 else logging.DEBUG
        log.log(log_at, "client %s fell behind: sending it a fresh state", client.name)
        client.greeted = False
        first = self._greeting() if self._greeting else None
        if first:
            queue.append(memoryview(first))
            client.pending += len(first)
            client.greeted = True
        elif self._greeting is None:
            client.greeted = True  # a raw line stream: the client just lost those lines

    def poll(self, timeout: float) -> bool:
        """Serve clients for up to `timeout` s; True when a wakeup fd fired."""
        woke = False
        timeout = self._listen_again(timeout)
        for key, events in self._sel.select(max(0.0, timeout)):
            tag = key.data
            if tag == "listen":
                self._accept()
            elif tag == "wakeup":
                woke = True
                with contextlib.suppress(BlockingIOError, InterruptedError):
                    key.fileobj.recv(512)  # type: ignore[union-attr]  # registered sockets only
            else:
                client = self._clients.get(key.fd)
                if client is None:
                    continue
                if events & selectors.EVENT_READ:
                    self._read(client)
                if events & selectors.EVENT_WRITE and client.sock.fileno() >= 0:
                    self._flush(client)
        return woke

    def _listen_again(self, timeout: float) -> float:
        """Put the listener back after its cooldown; the select waits no longer than that."""
        if self._deaf_until is None:
            return timeout
        left = self._deaf_until - self._clock()
        if left > 0:
            return min(timeout, left)
        self._deaf_until = None
        self._sel.register(self._listener, selectors.EVENT_READ, "listen")
        return timeout

    def _accept(self) -> None:
        """Accept up to `ACCEPT_BATCH` waiting connects; stop listening a while after a refusal."""
        refused, trouble = 0, ""
        for _ in range(ACCEPT_BATCH):
            try:
                sock, _ = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:  # EMFILE and kin: the listener would stay readable
                trouble = f"cannot accept clients: {exc.strerror or exc}"
                break
            if len(self._clients) >= MAX_CLIENTS or not self._limit.allow(_peer_uid(sock)):
                sock.close()
                refused += 1
            else:
                self._admit(sock)
        if refused:
            self.refused += refused
            trouble = trouble or (
                f"refusing connections: more than {MAX_CLIENTS} clients, or a peer opening "
                f"more than {PEER_RATE:g} a second"
            )
        if trouble:
            self._rest(trouble)

    def _rest(self, why: str) -> None:
        """Stop listening for `COOLDOWN` s; log `why` once per storm, not per cooldown."""
        now = self._clock()
        if now - self._last_refusal > QUIET:
            log.warning("%s", why)
        self._last_refusal = now
        self._sel.unregister(self._listener)
        self._deaf_until = now + COOLDOWN

    def _admit(self, sock: socket.socket) -> None:
        sock.setblocking(False)
        self._serials += 1
        client = _Client(sock, f"fd{sock.fileno()}", self._serials)
        self._clients[sock.fileno()] = client
        self._by_serial[client.serial] = client
        self._sel.register(sock, selectors.EVENT_READ, "client")
        if self._requests is not None:
            with contextlib.suppress(OSError):  # nothing sent yet: a stream reader
                if sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT):
                    client.asking = True  # it asked before it was accepted: no state
                    return
        self._greet(client)

    def _read(self, client: _Client) -> None:
        try:
            data = client.sock.recv(4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._close(client)
            return
        if self._requests is not None:
            self._take_requests(client, data)

    def _take_requests(self, client: _Client, data: bytes) -> None:
        """Hand each complete line `client` sent to the request handler and queue the error
        records it answers at once; the client stops getting the stream from its first byte,
        and is closed past `MAX_BAD` such errors."""
        if not client.asking:
            client.asking = True
            queue = client.queue
            kept = queue[0] if client.partial and queue else None
            queue.clear()
            client.pending = 0
            if kept is not None:  # the rest of a frame it is in the middle of
                queue.append(kept)
                client.pending = len(kept)
        if client.reader is None:
            client.reader = codec.FrameReader(history_wire.MAX_REQUEST)
        reader = client.reader
        bad = reader.bad
        records = reader.feed(data)
        handle = self._requests
        if handle is None:
            return
        errors = [history_wire.error(None, "not a JSON object on one line")] * (reader.bad - bad)
        for record in records:  # an error line answers each bad one (ids tell which)
            line = handle(client.serial, record)
            if line is not None:
                errors.append(line)
        for line in errors:
            client.bad += 1
            if client.bad > MAX_BAD:
                log.debug("client %s sent more than %d bad requests: closed", client.name, MAX_BAD)
                self._close(client)
                return
            self._queue(client, line)
            if client.sock.fileno() < 0:
                return

    def _flush(self, client: _Client) -> None:
        if client.sock.fileno() < 0 or client.sock.fileno() not in self._clients:
            return
        queue = client.queue
        while queue:
            try:
                sent = client.sock.send(queue[0])
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                self._close(client)
                return
            client.pending -= sent
            if sent == len(queue[0]):
                queue.popleft()
                client.partial = False
            else:
                queue[0] = queue[0][sent:]
                client.partial = True
        want = selectors.EVENT_READ | (selectors.EVENT_WRITE if queue else 0)
        self._sel.modify(client.sock, want, "client")

    def _close(self, client: _Client) -> None:
        fd = client.sock.fileno()
        if fd >= 0:
            self._clients.pop(fd, None)
            with contextlib.suppress(KeyError, ValueError):
                self._sel.unregister(client.sock)
        if self._by_serial.pop(client.serial, None) is not None and self._gone is not None:
            self._gone(client.serial)
        client.sock.close()

    def close(self) -> None:
        """Send what can be sent without waiting, close every client, remove the socket."""
        for client in list(self._clients.values()):
            self._flush(client)
            self._close(client)
        with contextlib.suppress(KeyError, ValueError):  # not registered while cooling down
            self._sel.unregister(self._listener)
        self._listener.close()
        # PermissionError: the daemon's unprivileged analyzer in root's folder (systemd
        # removes /run/netwatch at stop; the next start replaces a stale socket).
        with contextlib.suppress(FileNotFoundError, PermissionError):
            self.path.unlink()
        self._sel.close()
