"""Sender: runs the commands that publish user messages, on connections of its own.

A message send is one PUBLISH (or one EVALSHA), never retried. Through
``redis.Redis.publish`` it also pays for redis-py's general path: a pool
checkout that probes the socket for stale data, retry bookkeeping, metrics
hooks and the release, about 35 µs of CPU around a 70 µs exchange on this
project's benchmark machine. So the Sender keeps its own few connections and
talks to them directly: pack, one write, read the replies. Any error other
than a Redis error reply drops the connection, so a half-read reply can
never be taken for the next one; so does a READONLY reply, whose server
was demoted by a failover (the next connect finds the current primary). In
a Redis Cluster a MOVED reply re-routes the connection (cluster.py).

Connections are checked out per call, so threads that send at the same time
do not wait for each other; one thread's sends stay in order because each
call returns only after its replies are read.
"""

from __future__ import annotations

import select
import threading
from collections.abc import Sequence
from typing import Any

import redis
from redis.exceptions import MovedError

from .cluster import SlotMoved

__all__ = ["Sender"]

#: Connections kept open between calls; more are opened while threads send at once.
MAX_IDLE = 4


class Sender:
    """Sends batches of commands in one write and reads every reply."""

    def __init__(self, client: redis.Redis) -> None:
        pool = client.connection_pool
        self._connection_class = pool.connection_class
        self._connection_kwargs = dict(pool.connection_kwargs)
        self._idle: list[Any] = []
        self._lock = threading.Lock()
        self._closed = False

    def run(self, commands: Sequence[Sequence[Any]]) -> list[Any]:
        """Send ``commands`` in one write; their replies in order.

        A Redis error reply comes back in its place as a ``redis.ResponseError``
        (the others ran). A connection error or timeout raises: then the
        commands may or may not have run. In a Redis Cluster, when every
        command got a MOVED reply none of them ran, and they are sent once
        more, to the slot's new owner.
        """
        replies = self._run(commands)
        if replies and all(isinstance(r, MovedError) for r in replies):
            replies = self._run(commands)
        return replies

    def _run(self, commands: Sequence[Sequence[Any]]) -> list[Any]:
        conn = self._checkout()
        try:
            if getattr(conn, "_sock", None) is None:
                # connect() explicitly: send_packed_command() would connect to the
                # last address, and a Sentinel-managed connection must ask the
                # sentinels where the primary is now.
                conn.connect()
            conn.send_packed_command(conn.pack_commands(commands), check_health=False)
            replies: list[Any] = []
            demoted = False
            for _ in commands:
                try:
                    replies.append(conn.read_response())
                except SlotMoved as exc:
                    # The reply was read whole; the connection is off route now
                    # and reconnects at its next checkout, to the owner the MOVED named.
                    replies.append(exc.moved)
                except redis.ResponseError as exc:
                    replies.append(exc)
                    # READONLY: this server was a primary and is now a replica (a
                    # failover). Reconnect, so the next send finds the new primary.
                    demoted = demoted or isinstance(exc, redis.ReadOnlyError)
            if demoted:
                conn.disconnect()
            return replies
        except BaseException:
            conn.disconnect()  # never reuse a stream that may hold unread replies
            raise
        finally:
            self._checkin(conn)

    def close(self) -> None:
        """Close every connection; later calls open new ones."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.disconnect()

    def _checkout(self) -> Any:
        with self._lock:
            conn = self._idle.pop() if self._idle else None
        if conn is None:
            return self._connection_class(**self._connection_kwargs)
        if _went_stale(conn) or _moved(conn) or getattr(conn, "off_route", False):
            # Closed by the server while idle (restart, idle timeout, CLIENT KILL),
            # or Sentinel or the cluster named another primary: reconnect now,
            # while nothing has been sent that could be lost.
            conn.disconnect()
        return conn

    def _checkin(self, conn: Any) -> None:
        with self._lock:
            if not self._closed and len(self._idle) < MAX_IDLE:
                self._idle.append(conn)
                return
        conn.disconnect()


def _moved(conn: Any) -> bool:
    """True if a Sentinel-managed connection's pool knows of another primary by now."""
    pool = getattr(conn, "connection_pool", None)
    known = getattr(pool, "master_address", None)
    if known is None or getattr(conn, "_sock", None) is None:
        return False
    return tuple(known) != (conn.host, conn.port)


def _went_stale(conn: Any) -> bool:
    """True if an idle connection is readable: closed by the server, or holding stray bytes.

    One poll with a zero timeout (socket.recv would wait out the socket's
    timeout, and TLS sockets refuse MSG_PEEK).
    """
    sock = getattr(conn, "_sock", None)
    if sock is None:
        return False  # not connected: sending connects it
    try:
        if hasattr(select, "poll"):
            poller = select.poll()
            poller.register(sock, select.POLLIN)
            return bool(poller.poll(0))
        return bool(select.select([sock], [], [], 0)[0])
    except (OSError, ValueError):
        return True
