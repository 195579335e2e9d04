"""A TCP proxy for fault injection: one worker's link to Redis, on loopback.

:class:`TcpProxy` listens on a free port of 127.0.0.1 and forwards every
connection to an upstream address (the Redis server). One thread per proxy
runs a ``selectors`` loop over non-blocking sockets. Modes, switchable at any
time (the call returns once the loop has applied the mode):

``pass``
    forward both ways.
``cut``
    close every current connection (both sides) and close new ones as soon
    as they are accepted: like a peer that went away.
``blackhole``
    keep every connection open and accept new ones, but forward nothing in
    either direction and read nothing: like a partitioned network. The
    clients' writes fill socket buffers; their reads time out. What is
    buffered is delivered when the link heals, as TCP would after a
    partition, so a command that timed out in its client may still run.
``blackhole_up`` / ``blackhole_down``
    a blackhole in one direction only: ``blackhole_up`` forwards nothing
    from the client to Redis (and reads nothing from the client) while
    Redis' replies and messages still reach the client; ``blackhole_down``
    the reverse (the client's commands run, it never hears back). What is
    held back is delivered when the link heals, as for ``blackhole``.
``latency``
    forward both ways, each chunk ``latency`` seconds after it was read.
``close_upstream``
    close the Redis side of every current connection and keep its client
    side open and silent, as a load balancer with an idle timeout does:
    Redis sees the client gone; the client's reads wait, its writes are read
    and thrown away (what was buffered for either side is dropped). Those
    connections stay silent until their client closes them (or the proxy is
    closed), also after :meth:`~TcpProxy.heal`. Connections accepted
    afterwards are forwarded normally, so a client that reconnects gets
    through.

:meth:`TcpProxy.heal` goes back to ``pass``.
"""

from __future__ import annotations

import collections
import contextlib
import selectors
import socket
import threading
import time
from dataclasses import dataclass, field
from types import TracebackType

PASS, CUT, BLACKHOLE, LATENCY = "pass", "cut", "blackhole", "latency"
BLACKHOLE_UP, BLACKHOLE_DOWN = "blackhole_up", "blackhole_down"
CLOSE_UPSTREAM = "close_upstream"
MODES = (PASS, CUT, BLACKHOLE, BLACKHOLE_UP, BLACKHOLE_DOWN, LATENCY, CLOSE_UPSTREAM)
#: The modes that forward client -> Redis (up) and Redis -> client (down).
_FORWARD_UP = frozenset({PASS, LATENCY, BLACKHOLE_DOWN, CLOSE_UPSTREAM})
_FORWARD_DOWN = frozenset({PASS, LATENCY, BLACKHOLE_UP, CLOSE_UPSTREAM})
_HOST = "127.0.0.1"
_CHUNK = 65536
_MAX_BUFFERED = 1 << 20  # per direction: stop reading beyond this
_IDLE_WAIT = 0.1


@dataclass
class _Pipe:
    """One direction of a connection: what was read from ``src``, waiting for ``dst``."""

    src: socket.socket
    dst: socket.socket
    chunks: collections.deque[tuple[float, bytes]] = field(default_factory=collections.deque)
    buffered: int = 0
    eof: bool = False


class _Conn:
    def __init__(self, client: socket.socket, upstream: socket.socket) -> None:
        self.client = client
        self.upstream = upstream
        self.up = _Pipe(client, upstream)
        self.down = _Pipe(upstream, client)
        self.closed = False
        #: Redis' side was closed (close_upstream): the client side is read and ignored.
        self.silent = False
        #: The upstream socket's local address, as Redis sees this client (CLIENT LIST addr).
        host, port = upstream.getsockname()[:2]
        self.upstream_addr = f"{host}:{port}"

    def close_upstream(self) -> None:
        """Close Redis' side only; drop what either side had sent that was not passed on."""
        self.silent = True
        for pipe in (self.up, self.down):
            pipe.chunks.clear()
            pipe.buffered = 0
        with contextlib.suppress(OSError):
            self.upstream.close()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for sock in (self.client, self.upstream):
            with contextlib.suppress(OSError):
                sock.close()


class TcpProxy:
    """A loopback TCP proxy to ``upstream_host:upstream_port`` with switchable faults."""

    def __init__(self, upstream_host: str, upstream_port: int, *, name: str = "proxy") -> None:
        self.upstream = (upstream_host, upstream_port)
        self.name = name
        self._mode = PASS
        self._latency = 0.0
        self._lock = threading.Lock()
        self._requests: list[tuple[str, float, threading.Event]] = []
        self._conns: list[_Conn] = []
        self._closing = False
        self._listener: socket.socket | None = None
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._thread: threading.Thread | None = None
        self._selector = selectors.DefaultSelector()
        self._registered: dict[socket.socket, int] = {}
        self.accepted = 0
        self.bytes_forwarded = 0

    # -------------------------------------------------------------- public

    def start(self) -> TcpProxy:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((_HOST, 0))
        listener.listen(128)
        listener.setblocking(False)
        self._listener = listener
        self._thread = threading.Thread(target=self._run, name=f"chaos-{self.name}", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        """Close every connection and the listener; stop the thread."""
        self._closing = True
        self._wake()
        if self._thread is not None:
            self._thread.join(5.0)
        for conn in self._conns:
            conn.close()
        self._conns = []
        if self._listener is not None:
            with contextlib.suppress(OSError):
                self._listener.close()
        for sock in (self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                sock.close()
        with contextlib.suppress(Exception):
            self._selector.close()

    def __enter__(self) -> TcpProxy:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def port(self) -> int:
        if self._listener is None:
            raise RuntimeError("the proxy has not been started")
        port: int = self._listener.getsockname()[1]
        return port

    @property
    def url(self) -> str:
        return f"redis://{_HOST}:{self.port}/0"

    @property
    def mode(self) -> str:
        return self._mode

    @property
    def connections(self) -> int:
        """Connections open now, silent ones included (as of the loop's last pass)."""
        return sum(1 for c in list(self._conns) if not c.closed)

    @property
    def silent_connections(self) -> int:
        """Connections whose Redis side ``close_upstream`` closed and whose client
        side is still open (as of the loop's last pass)."""
        return sum(1 for c in list(self._conns) if c.silent and not c.closed)

    def upstream_addresses(self) -> set[str]:
        """``host:port`` of the proxy's open connections to Redis, as Redis' CLIENT
        LIST shows them (``addr``): which of Redis' clients come through this proxy."""
        return {c.upstream_addr for c in list(self._conns) if not c.closed and not c.silent}

    def set_mode(self, mode: str, latency: float = 0.0, timeout: float = 5.0) -> None:
        """Switch mode; returns once the proxy's loop has applied it."""
        if mode not in MODES:
            raise ValueError(f"unknown proxy mode {mode!r}; use one of {MODES}")
        if mode == LATENCY and latency <= 0:
            raise ValueError("latency mode needs a positive latency")
        if self._thread is None or not self._thread.is_alive():
            raise RuntimeError(f"{self.name} is not running")
        done = threading.Event()
        with self._lock:
            self._requests.append((mode, latency, done))
        self._wake()
        if not done.wait(timeout):
            raise RuntimeError(f"{self.name} did not apply mode {mode!r} within {timeout} s")

    def pass_through(self) -> None:
        self.set_mode(PASS)

    heal = pass_through

    def cut(self) -> None:
        self.set_mode(CUT)

    def blackhole(self) -> None:
        self.set_mode(BLACKHOLE)

    def blackhole_up(self) -> None:
        self.set_mode(BLACKHOLE_UP)

    def blackhole_down(self) -> None:
        self.set_mode(BLACKHOLE_DOWN)

    def latency(self, seconds: float) -> None:
        self.set_mode(LATENCY, seconds)

    def close_upstream(self) -> None:
        self.set_mode(CLOSE_UPSTREAM)

    def __repr__(self) -> str:
        where = f"{_HOST}:{self.port}" if self._listener is not None else "not started"
        host, port = self.upstream
        return f"<TcpProxy {self.name} {where} -> {host}:{port} {self._mode}>"

    # ------------------------------------------------------------ the loop

    def _wake(self) -> None:
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")

    def _run(self) -> None:
        assert self._listener is not None
        try:
            while not self._closing:
                self._apply_requests()
                self._update_interest()
                timeout = self._timeout()
                for key, mask in self._selector.select(timeout):
                    sock = key.fileobj
                    if sock is self._wake_r:
                        with contextlib.suppress(OSError):
                            self._wake_r.recv(4096)
                    elif sock is self._listener:
                        self._accept()
                    else:
                        conn: _Conn = key.data
                        if mask & selectors.EVENT_READ:
                            self._read(conn, conn.up if sock is conn.client else conn.down)
                        if mask & selectors.EVENT_WRITE and not conn.closed:
                            self._flush(conn, conn.down if sock is conn.client else conn.up)
                for conn in self._conns:
                    if conn.silent:
                        continue
                    if not conn.closed:
                        self._flush(conn, conn.up)
                    if not conn.closed:
                        self._flush(conn, conn.down)
                    if not conn.closed and _drained(conn):
                        conn.close()
                self._conns = [c for c in self._conns if not c.closed]
        finally:
            with self._lock:
                for _, _, done in self._requests:
                    done.set()
                self._requests.clear()

    def _apply_requests(self) -> None:
        with self._lock:
            requests, self._requests = self._requests, []
        for mode, latency, done in requests:
            self._mode = mode
            self._latency = latency if mode == LATENCY else 0.0
            if mode == CUT:
                for conn in self._conns:
                    conn.close()
                self._conns = []
            elif mode == CLOSE_UPSTREAM:
                for conn in self._conns:
                    if not conn.closed:
                        conn.close_upstream()
            done.set()

    def _forwards(self, conn: _Conn, pipe: _Pipe) -> bool:
        """Whether the current mode passes ``pipe``'s direction on."""
        if conn.silent:
            return False
        return self._mode in (_FORWARD_UP if pipe is conn.up else _FORWARD_DOWN)

    def _update_interest(self) -> None:
        wanted: dict[socket.socket, tuple[int, object]] = {
            self._wake_r: (selectors.EVENT_READ, None),
        }
        assert self._listener is not None
        wanted[self._listener] = (selectors.EVENT_READ, None)
        now = time.monotonic()
        for conn in self._conns:
            if conn.closed:
                continue
            if conn.silent:  # read (and drop) what the client sends; see it close
                wanted[conn.client] = (selectors.EVENT_READ, conn)
                continue
            masks = {conn.client: 0, conn.upstream: 0}
            for pipe in (conn.up, conn.down):
                forwarding = self._forwards(conn, pipe)
                if forwarding and not pipe.eof and pipe.buffered < _MAX_BUFFERED:
                    masks[pipe.src] |= selectors.EVENT_READ
                if forwarding and pipe.chunks and pipe.chunks[0][0] <= now:
                    masks[pipe.dst] |= selectors.EVENT_WRITE
            for sock, mask in masks.items():
                if mask:
                    wanted[sock] = (mask, conn)
        for sock in list(self._registered):
            if sock not in wanted or sock.fileno() < 0:
                with contextlib.suppress(KeyError, ValueError, OSError):
                    self._selector.unregister(sock)
                del self._registered[sock]
        for sock, (mask, data) in wanted.items():
            if sock.fileno() < 0:
                continue
            if sock not in self._registered:
                self._selector.register(sock, mask, data)
            elif self._registered[sock] != mask:
                self._selector.modify(sock, mask, data)
            self._registered[sock] = mask

    def _timeout(self) -> float:
        now = time.monotonic()
        due = [
            pipe.chunks[0][0]
            for conn in self._conns
            for pipe in (conn.up, conn.down)
            if pipe.chunks and not conn.closed and self._forwards(conn, pipe)
        ]
        if not due:
            return _IDLE_WAIT
        return max(0.0, min(min(due) - now, _IDLE_WAIT))

    def _accept(self) -> None:
        assert self._listener is not None
        while True:
            try:
                client, _ = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            self.accepted += 1
            if self._mode == CUT:
                with contextlib.suppress(OSError):
                    client.close()
                continue
            try:
                upstream = socket.create_connection(self.upstream, timeout=1.0)
            except OSError:
                with contextlib.suppress(OSError):
                    client.close()
                continue
            for sock in (client, upstream):
                sock.setblocking(False)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._conns.append(_Conn(client, upstream))

    def _read(self, conn: _Conn, pipe: _Pipe) -> None:
        if conn.closed:
            return
        if conn.silent:
            self._swallow(conn)
            return
        if not self._forwards(conn, pipe):
            return
        data = self._recv(conn, pipe.src)
        if data is None:
            return
        if not data:
            pipe.eof = True
            return
        pipe.chunks.append((time.monotonic() + self._latency, data))
        pipe.buffered += len(data)

    def _swallow(self, conn: _Conn) -> None:
        """A silent connection: read what its client sends and drop it; close on EOF."""
        if self._recv(conn, conn.client) == b"":
            conn.close()

    @staticmethod
    def _recv(conn: _Conn, sock: socket.socket) -> bytes | None:
        """What ``sock`` has for us: b"" at EOF, None if nothing now or on an error
        (which closes ``conn``)."""
        try:
            return sock.recv(_CHUNK)
        except (BlockingIOError, InterruptedError):
            return None
        except OSError:
            conn.close()
            return None

    def _flush(self, conn: _Conn, pipe: _Pipe) -> None:
        if not self._forwards(conn, pipe):
            return
        now = time.monotonic()
        while pipe.chunks and pipe.chunks[0][0] <= now:
            due, data = pipe.chunks[0]
            try:
                sent = pipe.dst.send(data)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                conn.close()
                return
            self.bytes_forwarded += sent
            pipe.buffered -= sent
            if sent < len(data):
                pipe.chunks[0] = (due, data[sent:])
                return
            pipe.chunks.popleft()


def _drained(conn: _Conn) -> bool:
    """One side closed and everything it sent has been passed on: close both."""
    return (conn.up.eof and not conn.up.chunks) or (conn.down.eof and not conn.down.chunks)
