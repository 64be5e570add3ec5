"""The daemon's Unix socket: JSON lines of codec snapshots to every connected client.

Non-blocking and driven by the service loop's `poll`, so no thread and no lock. Each client
has an output buffer; a client that lets it grow past `max_buffer` and three snapshots (it
reads too slowly) is dropped, never waited for. The socket file is created 0660 (umask set
before bind, so there is no window where it is wider) and given to root and the `netwatch`
group when that group exists; everyone else gets EACCES on connect. Clients only read;
anything they send is discarded.
"""

from __future__ import annotations

import contextlib
import grp
import logging
import os
import selectors
import socket
from collections import deque
from collections.abc import Callable
from pathlib import Path

from netwatch.errors import NetwatchError

log = logging.getLogger("netwatch.daemon")

GROUP = "netwatch"
MAX_BUFFER = 16 * 1024 * 1024
MAX_CLIENTS = 64
SLACK_SNAPSHOTS = 3


class _Client:
    """One connected client and what is queued for it.

    Lines are queued as they are (one snapshot of 10,000 flows is ~14 MB), never copied
    into one growing buffer: the first is sent from a moving view until it is gone.
    """

    __slots__ = ("name", "pending", "queue", "sock")

    def __init__(self, sock: socket.socket, name: str) -> None:
        self.sock = sock
        self.name = name
        self.queue: deque[memoryview] = deque()
        self.pending = 0
        """Bytes queued and not yet sent."""


def _group_id() -> int | None:
    try:
        return grp.getgrnam(GROUP).gr_gid
    except KeyError:
        return None


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

    def __init__(self, path: Path, max_buffer: int = MAX_BUFFER, *, make_dir: bool = False) -> None:
        """Bind `path`; its folder must exist unless `make_dir` (the default socket only).

        A folder named on the command line that is missing is a mistake (a typo, a runtime
        dir not yet made) to report, not to create with whatever owner and mode result.
        """
        self.path = path
        self.max_buffer = max_buffer
        self.dropped = 0
        self._clients: dict[int, _Client] = {}
        self._sel = selectors.DefaultSelector()
        self._greeting: Callable[[], bytes | None] | None = None
        self._listener = self._bind(path, make_dir)
        self._sel.register(self._listener, selectors.EVENT_READ, "listen")
        self._wakeups: list[socket.socket] = []

    def _bind(self, path: Path, make_dir: bool) -> socket.socket:
        if not path.parent.is_dir():
            if not make_dir:
                raise NetwatchError(f"cannot create socket {path}: no directory {path.parent}")
            path.parent.mkdir(parents=True, mode=0o750)
            # mkdir's mode is narrowed by the umask; the group must reach the socket inside.
            os.chmod(path.parent, 0o750)  # noqa: S103  # group traverse is the point
            self._chown(path.parent)
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
        sock.listen(16)
        sock.setblocking(False)
        return sock

    @staticmethod
    def _chown(path: Path) -> None:
        gid = _group_id()
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
        """What a newly connected client receives first (built on connect: the latest state)."""
        self._greeting = make

    def broadcast(self, line: bytes) -> None:
        """Queue one line for every client and try to send it at once."""
        for client in list(self._clients.values()):
            self._queue(client, line)

    def _queue(self, client: _Client, data: bytes) -> None:
        client.queue.append(memoryview(data))
        client.pending += len(data)
        # A client may always lag a few snapshots, however large one snapshot is (10,000
        # connections encode to ~14 MB); beyond that it is too slow and is dropped.
        if client.pending > max(self.max_buffer, SLACK_SNAPSHOTS * len(data)):
            self.dropped += 1
            log.warning("dropped slow client %s (%d bytes unread)", client.name, client.pending)
            self._close(client)
            return
        self._flush(client)

    def poll(self, timeout: float) -> bool:
        """Serve clients for up to `timeout` s; True when a wakeup fd fired."""
        woke = False
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

    def _accept(self) -> None:
        try:
            sock, _ = self._listener.accept()
        except (BlockingIOError, InterruptedError):
            return
        if len(self._clients) >= MAX_CLIENTS:
            sock.close()
            return
        sock.setblocking(False)
        client = _Client(sock, f"fd{sock.fileno()}")
        self._clients[sock.fileno()] = client
        self._sel.register(sock, selectors.EVENT_READ, "client")
        first = self._greeting() if self._greeting else None
        if first:
            self._queue(client, first)

    def _read(self, client: _Client) -> None:
        try:
            data = client.sock.recv(4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._close(client)

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
            else:
                queue[0] = queue[0][sent:]
        want = selectors.EVENT_READ | (selectors.EVENT_WRITE if queue else 0)
        self._sel.modify(client.sock, want, "client")

    def _close(self, client: _Client) -> None:
        fd = client.sock.fileno()
        if fd >= 0:
            self._clients.pop(fd, None)
            with contextlib.suppress(KeyError, ValueError):
                self._sel.unregister(client.sock)
        client.sock.close()

    def close(self) -> None:
        """Send what can be sent without waiting, close every client, remove the socket."""
        for client in list(self._clients.values()):
            self._flush(client)
            self._close(client)
        with contextlib.suppress(KeyError, ValueError):
            self._sel.unregister(self._listener)
        self._listener.close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        self._sel.close()
