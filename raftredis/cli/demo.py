"""``raftredis demo``: the demo of ``python -m raftredis.demo``, from the tool."""

from __future__ import annotations

import click

from .. import demo as demo_module

__all__ = ["demo"]


@click.command(short_help="Run the live demo: workers, elections, faults.")
@click.option(
    "--workers", type=click.IntRange(min=1), default=4, show_default=True, metavar="N",
    help="Worker processes of the kind.",
)  # fmt: skip
@click.option(
    "--duration", type=click.FloatRange(min=0, min_open=True), default=60.0, show_default=True,
    metavar="SECONDS", help="Stop after this long; Ctrl-C stops earlier.",
)  # fmt: skip
@click.option(
    "--kind", "-k", default=demo_module.DEFAULT_KIND, show_default=True, metavar="KIND",
    help="The kind the workers share.",
)  # fmt: skip
@click.option(
    "--lease-ttl", type=click.FloatRange(min=0.1), default=3.0, show_default=True,
    metavar="SECONDS", help="lease_ttl of every worker.",
)  # fmt: skip
@click.option(
    "--fault-interval", type=click.FloatRange(min=0), default=10.0, show_default=True,
    metavar="SECONDS", help="Disrupt the leader this often (SIGKILL / reelect()); 0: never.",
)  # fmt: skip
@click.option(
    "--url", default=None, metavar="URL",
    help="Use this Redis instead of starting a private redis-server (REDIS_URL is not read).",
)  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Also print the summary as one JSON line.")
def demo(
    workers: int,
    duration: float,
    kind: str,
    lease_ttl: float,
    fault_interval: float,
    url: str | None,
    as_json: bool,
) -> int:
    """Run the live demo: worker processes elect a leader, which is disrupted every few seconds.

    The same as `python -m raftredis.demo` (`make demo`): it starts its own
    redis-server unless --url is given, prints every election, each failover
    time and the job counts, then a summary.
    """
    argv = [
        f"--workers={workers}",
        f"--duration={duration!r}",
        f"--kind={kind}",
        f"--lease-ttl={lease_ttl!r}",
        f"--fault-interval={fault_interval!r}",
    ]
    if url is not None:
        argv.append(f"--redis-url={url}")
    if as_json:
        argv.append("--json")
    return demo_module.main(argv)
