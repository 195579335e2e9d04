"""``raftredis status``: the leader, its term and the members of a kind, read once."""

from __future__ import annotations

import json

import click
import redis

from ..observe import read_snapshot
from .common import open_client, redis_failure
from .options import Target, target_options

__all__ = ["status"]


@click.command(short_help="Show the leader, its term and the members of a kind.")
@target_options
def status(target: Target) -> int:
    """Show the leader, its term and the members of a kind, without joining it.

    With --json, print one JSON object: {"kind", "prefix", "time", "leader":
    {"id", "term", "expires_in"} or null, "term", "members": [{"id", "state",
    "term", "meta", "joined_at", "last_seen", "expires_in"}]}.
    """
    # The read a Client's get_instances() makes too (observe.py), with the
    # server's TIME: one MULTI/EXEC that writes nothing.
    client = open_client(target.url, target.keys)
    try:
        snapshot = read_snapshot(client, target.keys)
    except (redis.RedisError, OSError) as exc:
        raise redis_failure(target.url, exc) from exc
    finally:
        client.close()
    if target.as_json:
        click.echo(json.dumps(snapshot.to_json()))
    else:
        # Only the table needs rich (tens of ms to import).
        from rich.console import Console

        from .render import snapshot_table

        caption = None if snapshot.term is None else f"highest term started: {snapshot.term}"
        Console().print(snapshot_table(snapshot, caption))
    return 0
