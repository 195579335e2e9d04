"""The click group of ``raftredis`` and the translation of failures into exit codes.

Each command's module is imported only when that command runs (or for
``--help``): ``send`` and ``status`` then start without rich, the demo and
the supervisor of ``run``, which is most of a short command's wall time.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Sequence

import click

from .. import __version__
from .common import CliError

__all__ = ["cli", "run_cli"]

#: Exit code when Ctrl-C interrupts a command that does not handle it itself.
INTERRUPTED = 130

#: Each command, by name: the module of this package that defines it (as the same name).
COMMANDS = {"demo": ".demo", "run": ".run", "send": ".send", "status": ".status", "watch": ".watch"}


class LazyGroup(click.Group):
    """A group that imports a command's module the first time the command is needed."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*COMMANDS, *self.commands})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in COMMANDS:
            module = importlib.import_module(COMMANDS[cmd_name], __package__)
            command = getattr(module, cmd_name)
            assert isinstance(command, click.Command)
            self.add_command(command)
        return self.commands.get(cmd_name)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="raftredis")
def cli() -> None:
    """Inspect and use raftredis kinds: leader election, discovery and messaging via Redis.

    Exit codes: 0 success, 1 failure (e.g. Redis unreachable), 2 usage error.
    """


def run_cli(argv: Sequence[str] | None = None) -> int:
    """Run the command line on ``argv`` (default ``sys.argv[1:]``); return the exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        result = cli.main(args=args, prog_name="raftredis", standalone_mode=False)
    except CliError as exc:
        click.echo(f"raftredis: {exc.message}", err=True)
        return exc.code
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.Abort:
        click.echo("raftredis: interrupted", err=True)
        return INTERRUPTED
    except BrokenPipeError:
        # The reader went away (`raftredis status | head`): exit quietly, and keep
        # Python from complaining again when it flushes stdout at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    return result if isinstance(result, int) else 0
