"""PublishPool: runs the commands that publish user messages, on connections of its own.

A message send is one PUBLISH (or one EVALSHA), never retried. Through
``redis.Redis.publish`` it also pays for redis-py's general path: a pool
checkout that probes the socket for stale data, retry bookkeeping, metrics
hooks and the release, a cost as large as the exchange itself (figures in
docs/benchmarks.md). So the PublishPool keeps its own few connections and
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

import threading
from collections.abc import Sequence
from typing import Any

import redis
from redis.exceptions import MovedError

from . import redispy_seam as seam
from .cluster import SlotMoved

__all__ = ["PublishPool"]

#: Connections kept open between calls; more are opened while threads send at once.
MAX_IDLE = 4


class PublishPool:
    """Sends batches of commands in one write and reads every reply."""

    def __init__(self, client: redis.Redis) -> None:
        self._connection_class, self._connection_kwargs = seam.connection_settings(
            client.connection_pool
        )
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
            seam.send_commands(conn, commands)
            replies: list[Any] = []
            demoted = False
            for _ in commands:
                try:
                    replies.append(seam.read_reply(conn))
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
            return seam.new_connection(self._connection_class, self._connection_kwargs)
        off_route = getattr(conn, "off_route", False)  # a cluster connection (cluster.py)
        if seam.has_unread_bytes(conn) or seam.primary_moved(conn) or off_route:
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
