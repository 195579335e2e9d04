"""``raftredis send``: send one JSON message to instances of a kind, without joining it."""

from __future__ import annotations

import json
import uuid

import click

from ..client import Client
from ..errors import BackendError, MessageError
from .common import CONNECT_TIMEOUT, CliError, redis_failure
from .options import Target, json_value, target_options

__all__ = ["send"]

_ADDRESSES = ("to", "all", "leader", "followers")


@click.command(short_help="Send a JSON message to one, all, the leader or the followers.")
@target_options
@click.option("--to", "to_id", metavar="ID", help="Send to the instance with this id.")
@click.option("--all", "to_all", is_flag=True, help="Send to every instance of the kind.")
@click.option("--leader", "to_leader", is_flag=True, help="Send to the leader.")
@click.option("--followers", "to_followers", is_flag=True, help="Send to the followers.")
@click.argument("payload", metavar="PAYLOAD")
def send(
    target: Target,
    to_id: str | None,
    to_all: bool,
    to_leader: bool,
    to_followers: bool,
    payload: str,
) -> int:
    """Send PAYLOAD, a JSON value, and print how many instances received it.

    Give exactly one of --to ID, --all, --leader, --followers. A string must be
    quoted as JSON: '"hello"'. The message goes out through a raftredis Client,
    which does not join the kind: the instances see a message from a follower
    whose sender id is raftredis-cli-<random>, and nothing else (no join, no
    election). With --json, print {"received": N}. Delivery is at most once: 0
    means nobody got it.
    """
    chosen = [flag for flag, on in zip(_ADDRESSES, (to_id, to_all, to_leader, to_followers)) if on]
    if len(chosen) != 1:
        raise click.UsageError("give exactly one of --to ID, --all, --leader, --followers")
    value = json_value(payload, "PAYLOAD")
    # No PING first: a Redis that cannot be reached fails the send itself, with
    # the same one-line message, one round trip sooner.
    client = Client(
        redis=target.url,
        kind=target.kind,
        key_prefix=target.prefix,
        id=f"raftredis-cli-{uuid.uuid4().hex[:12]}",
        socket_timeout=CONNECT_TIMEOUT,
    )
    try:
        if to_id is not None:
            received = client.message_to(to_id, value)
        elif to_all:
            received = client.message_all(value)
        elif to_leader:
            received = client.message_leader(value)
        else:
            received = client.message_followers(value)
    except MessageError as exc:
        raise CliError(str(exc), code=2) from exc
    except BackendError as exc:
        raise redis_failure(target.url, exc) from exc
    finally:
        client.close()
    if target.as_json:
        click.echo(json.dumps({"received": received}))
    else:
        click.echo(f"received by {received} instance{'' if received == 1 else 's'}")
    return 0
