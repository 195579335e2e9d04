"""The options every command takes (--url, --kind, --prefix, --json) and their checks."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import click

from ..candidate import Candidate
from ..connection import connection_spec
from ..errors import ConfigurationError
from ..keys import KeySpace

__all__ = [
    "DEFAULT_PREFIX",
    "DEFAULT_URL",
    "Target",
    "json_value",
    "target_options",
]

F = TypeVar("F", bound=Callable[..., Any])

DEFAULT_URL = "redis://localhost:6379/0"
DEFAULT_PREFIX = "raftredis"


@dataclass(frozen=True)
class Target:
    """Which kind of which Redis a command works on, and how it prints."""

    url: str
    kind: str
    prefix: str
    as_json: bool

    @functools.cached_property
    def keys(self) -> KeySpace:
        """The kind's Redis keys and channels (the layout Candidates use)."""
        sharded = connection_spec(self.url).cluster is not None
        return KeySpace(self.prefix, self.kind, sharded=sharded)

    def check(self) -> Target:
        """Check the URL, kind and prefix as a Candidate would; UsageError (exit 2) if bad.

        Building a Candidate validates all three and touches no network.
        """
        try:
            Candidate(redis=self.url, kind=self.kind, key_prefix=self.prefix)
        except ConfigurationError as exc:
            raise click.UsageError(str(exc)) from exc
        return self


def target_options(fn: F) -> F:
    """Add --url, --kind, --prefix and --json; the command gets ``target: Target``.

    Put it right under ``@click.command``; the command's own options go below it.
    """

    @functools.wraps(fn)
    def wrapper(*, url: str, kind: str, prefix: str, as_json: bool, **kwargs: Any) -> Any:
        return fn(target=Target(url, kind, prefix, as_json).check(), **kwargs)

    decorated: Any = wrapper
    for option in reversed(_TARGET_OPTIONS):
        decorated = option(decorated)
    return decorated  # type: ignore[no-any-return]


_TARGET_OPTIONS: list[Callable[[F], F]] = [
    click.option(
        "--url",
        envvar="REDIS_URL",
        default=DEFAULT_URL,
        show_default=True,
        show_envvar=True,
        metavar="URL",
        help="Redis to use: a redis://, rediss:// (TLS) or unix:// URL.",
    ),
    click.option("--kind", "-k", required=True, metavar="KIND", help="The kind (service name)."),
    click.option(
        "--prefix",
        default=DEFAULT_PREFIX,
        show_default=True,
        metavar="PREFIX",
        help="Key prefix of the kind (the Candidates' key_prefix).",
    ),
    click.option("--json", "as_json", is_flag=True, help="Print JSON, for scripts."),
]


def json_value(text: str, what: str) -> Any:
    """Parse ``text`` as JSON for an argument; UsageError (exit 2) saying how to quote it."""
    try:
        return json.loads(text)
    except ValueError:
        raise click.UsageError(
            f"{what} must be JSON, got {text!r}. Quote a string as JSON, "
            f"e.g. '\"{text}\"', or pass an object, e.g. '{{\"job\": 1}}'."
        ) from None
