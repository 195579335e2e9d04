"""``raftredis run``: run a command on exactly one host of a kind, the leader."""

from __future__ import annotations

import shlex
import socket
from typing import Any

import click

from ..errors import ConfigurationError
from .common import check_reachable
from .options import Target, json_value, target_options
from .supervisor import EventLog, Supervisor

__all__ = ["run"]


@click.command(
    short_help="Run a command only while this instance leads the kind.",
    context_settings={"allow_interspersed_args": False},
)
@target_options
@click.option(
    "--grace",
    type=click.FloatRange(min=0),
    default=10.0,
    show_default=True,
    metavar="SECONDS",
    help="After SIGTERM, wait this long before SIGKILL.",
)
@click.option(
    "--lease-ttl",
    type=click.FloatRange(min=0.1),
    default=3.0,
    show_default=True,
    metavar="SECONDS",
    help="The Candidate's lease_ttl: a killed leader is replaced about this fast.",
)
@click.option(
    "--meta",
    metavar="JSON",
    default=None,
    help="Meta of this instance (default: the command and the host name).",
)
@click.option(
    "--once",
    is_flag=True,
    help="When the command exits by itself, exit with its code instead of restarting it.",
)
@click.option(
    "--restart-delay",
    type=click.FloatRange(min=0),
    default=1.0,
    show_default=True,
    metavar="SECONDS",
    help="First delay before restarting a command that exited; doubles up to 30 s.",
)
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
def run(
    target: Target,
    grace: float,
    lease_ttl: float,
    meta: str | None,
    once: bool,
    restart_delay: float,
    command: tuple[str, ...],
) -> int:
    """Join the kind and run COMMAND only while this instance is the leader.

    COMMAND starts when this instance is elected, in a process group of its own,
    with RAFTREDIS_KIND, RAFTREDIS_PREFIX, RAFTREDIS_ID and RAFTREDIS_TERM (the
    fencing token) in its environment and stdin from /dev/null. When leadership
    is lost, the group gets SIGTERM, then SIGKILL after --grace; it starts again
    at the next election. If COMMAND exits by itself while leading, it is
    restarted after a backoff, or with --once the tool exits with its code.
    SIGINT, SIGTERM and SIGHUP are forwarded to COMMAND; once it has exited, the
    tool hands leadership over and exits 0 (a second signal SIGKILLs COMMAND).
    If this tool is killed outright, a watchdog process stops COMMAND's group.

    Exit codes: 0 stopped by a signal; COMMAND's code with --once (128+N if
    killed by signal N); 1 failure (Redis unreachable at start); 2 usage error;
    126/127 COMMAND could not be run / was not found. Its own messages go to
    stderr (with --json, one JSON object per line); stdout is COMMAND's.
    """
    if meta is None:
        meta_value: Any = {"command": shlex.join(command), "host": socket.gethostname()}
    else:
        meta_value = json_value(meta, "--meta")
    try:
        supervisor = Supervisor(
            target,
            command,
            grace=grace,
            lease_ttl=lease_ttl,
            meta=meta_value,
            once=once,
            restart_delay=restart_delay,
            log=EventLog(target.as_json),
        )
    except ConfigurationError as exc:  # e.g. a lease_ttl whose timings cannot work
        raise click.UsageError(str(exc)) from exc
    check_reachable(target.url)
    return supervisor.run()
