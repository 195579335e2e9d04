"""Flask integration: one Candidate per serving process, started on first use.

.. code-block:: python

    from flask import Flask
    from raftredis.contrib.flask import RaftRedis

    raft = RaftRedis()

    @raft.while_leader
    def scheduler(stop):
        while not stop.wait(60):
            ...  # runs in exactly one process of the whole service

    def create_app():
        app = Flask(__name__)
        app.config["RAFTREDIS_KIND"] = "my-service"
        raft.init_app(app)
        return app

Configuration (``app.config``): ``RAFTREDIS_`` and the setting name of
every ``Candidate`` keyword (:data:`raftredis.contrib.SETTING_KEYS`: the
keyword in upper case, as ``RAFTREDIS_LEASE_TTL`` or ``RAFTREDIS_SECRET``,
except ``RAFTREDIS_URL`` for ``redis`` and ``RAFTREDIS_PREFIX`` for
``key_prefix``). ``RAFTREDIS_KIND`` is required; ``RAFTREDIS_URL`` defaults
to the ``REDIS_URL`` environment variable, else ``localhost:6379``;
``RAFTREDIS_META`` may be a callable, called in the process that runs the
Candidate. ``RAFTREDIS_AUTOSTART`` (default True) is the extension's own.
Any other ``RAFTREDIS_*`` key is an error.

``init_app`` does no I/O and starts no thread. The Candidate is built and
started in the process that serves, the first time it is needed: before the
first request, or at the first access of :attr:`RaftRedis.candidate` or
:attr:`RaftRedis.is_leader`. So the process that only forks workers
(``gunicorn --preload``) or watches files (the Flask reloader's parent) never
joins the kind, and a forked child builds a Candidate of its own.
See ``docs/flask.md``.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import Any, TypeVar

import click
from flask import Flask, current_app, has_app_context
from flask.cli import AppGroup

from ..candidate import Candidate
from ..connection import connection_spec, describe
from ..errors import ConfigurationError
from ..leadership import LeaderFunction, Leadership
from . import (
    SETTING_KEYS,
    Hooks,
    LazyCandidate,
    Settings,
    closest_setting,
    format_status,
    parse_settings,
    read_status,
    unknown_settings,
)

__all__ = ["RaftRedis", "cli"]

F = TypeVar("F", bound=Callable[..., Any])

#: Where the per-app state lives: ``app.extensions[EXTENSION_KEY]``.
EXTENSION_KEY = "raftredis"
_CONFIG_PREFIX = "RAFTREDIS_"
# The extension's own settings, beside those of SETTING_KEYS.
_OWN_KEYS = ("AUTOSTART",)
# RaftRedis(app, **overrides): Candidate keyword -> setting key.
_OVERRIDE_KEYS = {keyword: key for key, keyword in SETTING_KEYS.items()}


class _AppState:
    """What the extension keeps per app, in ``app.extensions["raftredis"]``."""

    def __init__(self, extension: RaftRedis, app: Flask, settings: Settings, autostart: bool):
        self.extension = extension
        self.app = app
        self.autostart = autostart
        self.lazy = LazyCandidate(
            settings, extension._hooks, wrap=self.wrap, label=f"Flask app {app.name!r}"
        )

    def before_request(self) -> None:
        # After a second init_app() on the same app, only the newest state may start.
        if self.autostart and self.app.extensions.get(EXTENSION_KEY) is self:
            self.lazy.try_start()

    def wrap(self, fn: LeaderFunction) -> LeaderFunction:
        """Run a ``while_leader`` function inside this app's application context."""

        @functools.wraps(fn)
        def in_app_context(stop_event: Leadership) -> object:
            with self.app.app_context():
                return fn(stop_event)

        return in_app_context


class RaftRedis:
    """The Flask extension: a Candidate per app and per serving process.

    ``RaftRedis(app)`` or ``RaftRedis()`` then ``init_app(app)``; one
    extension object can serve several apps (each gets its own Candidate,
    configured from its own ``app.config``). Keyword arguments are
    ``Candidate`` arguments, any of them (``kind=``, ``redis=``,
    ``lease_ttl=``, ``secret=``...), that take precedence over ``app.config``.

    Receivers (:meth:`on`) and leader functions (:meth:`while_leader`) can be
    registered at import time, before any Candidate exists; they are attached
    to the Candidate of every app that uses this extension, when it is built.
    ``while_leader`` functions run inside the app's application context.
    """

    def __init__(self, app: Flask | None = None, **overrides: Any) -> None:
        unknown = sorted(set(overrides) - set(_OVERRIDE_KEYS))
        if unknown:
            named = []
            for keyword in unknown:
                guess = closest_setting(keyword, SETTING_KEYS)
                named.append(keyword + (f" (did you mean {SETTING_KEYS[guess]}?)" if guess else ""))
            raise TypeError(
                f"RaftRedis() got unknown keyword argument(s) {', '.join(named)}; "
                f"accepted: {', '.join(sorted(_OVERRIDE_KEYS))}"
            )
        self.app = app
        self._overrides = dict(overrides)
        self._hooks = Hooks()
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        """Read the app's configuration, check it, and register the hooks. No I/O.

        Raises :class:`~raftredis.ConfigurationError` naming the setting to fix
        (``RAFTREDIS_KIND`` missing, a bad ``RAFTREDIS_URL``, timings that
        cannot work, a ``RAFTREDIS_*`` key that is not a setting...).
        """
        keys = [
            key[len(_CONFIG_PREFIX) :]
            for key in app.config
            if isinstance(key, str) and key.startswith(_CONFIG_PREFIX)
        ]
        values = {key: app.config[_CONFIG_PREFIX + key] for key in keys if key in SETTING_KEYS}
        values.update({_OVERRIDE_KEYS[k]: v for k, v in self._overrides.items()})
        parsed = parse_settings(values, name=_setting_name)
        unknown = unknown_settings(keys, own_keys=_OWN_KEYS, name=_setting_name)
        settings = Settings(parsed.kwargs, parsed.meta, (*unknown, *parsed.problems))
        if not settings.ok:
            raise settings.error()
        autostart = app.config.get(_CONFIG_PREFIX + "AUTOSTART", True)
        if not isinstance(autostart, bool):
            raise ConfigurationError(
                f"RAFTREDIS_AUTOSTART must be True or False, not {autostart!r}"
            )
        state = _AppState(self, app, settings, autostart)
        app.extensions[EXTENSION_KEY] = state
        app.before_request(state.before_request)
        if cli.name not in app.cli.commands:
            app.cli.add_command(cli)

    # ------------------------------------------------------------ accessors

    @property
    def candidate(self) -> Candidate:
        """This process's Candidate for the current app, started if it is not.

        Raises what ``Candidate.start()`` raises, such as ``BackendError`` when
        Redis cannot be reached. With ``RAFTREDIS_AUTOSTART = False`` it is
        returned without being started: call :meth:`start`.
        """
        state = self._state()
        return state.lazy.get(start=state.autostart)

    def get_candidate(self, app: Flask | None = None, *, start: bool = True) -> Candidate:
        """This process's Candidate for ``app`` (default: the current app).

        Started unless ``start`` is false. Raises as :meth:`Candidate.start` does.
        """
        return self._state(app).lazy.get(start=start)

    @property
    def is_leader(self) -> bool:
        """Whether this process leads the current app's kind now.

        Starts the Candidate first if it is not running (unless
        ``RAFTREDIS_AUTOSTART`` is false), like a request does; never raises:
        False when it could not start.
        """
        state = self._state()
        lazy = state.lazy
        running = lazy.try_start() if state.autostart else lazy.running()
        return running is not None and running.is_leader

    def start(self, app: Flask | None = None, timeout: float | None = None) -> Candidate:
        """Start this process's Candidate for ``app`` now (for gunicorn's ``post_worker_init``).

        Returns the running Candidate; raises as :meth:`Candidate.start` does.
        """
        return self._state(app).lazy.get(start=True, timeout=timeout)

    def stop(self, app: Flask | None = None, timeout: float | None = None) -> None:
        """Stop this process's Candidate for ``app`` (resign if leader, leave the kind).

        A later use builds and starts a new one.
        """
        self._state(app).lazy.stop(timeout)

    # ------------------------------------------------------------ receivers

    def on(self, event: str, receiver: F | None = None) -> Any:
        """Connect ``receiver`` to a signal of every app's Candidate (also as a decorator).

        ``event`` is a signal name or a node-raft-redis event name, as for
        :meth:`raftredis.Candidate.on`. Callable at import time.
        """
        return self._hooks.on(event, receiver)

    def while_leader(self, fn: LeaderFunction) -> LeaderFunction:
        """Run ``fn(stop_event)`` in its own thread, in an app context, while this process leads.

        See :meth:`raftredis.Candidate.while_leader`. Callable at import time,
        also as a decorator.
        """
        return self._hooks.while_leader(fn)

    # --------------------------------------------------------------- helpers

    def _state(self, app: Flask | None = None) -> _AppState:
        if app is None:
            if has_app_context():
                app = current_app
            elif self.app is not None:
                app = self.app
            else:
                raise RuntimeError(
                    "no Flask app: call this inside an application context "
                    "(with app.app_context(): ...), or pass app="
                )
        state = app.extensions.get(EXTENSION_KEY)
        if not isinstance(state, _AppState) or state.extension is not self:
            raise RuntimeError(
                f"RaftRedis.init_app() was not called for the Flask app {app.name!r}"
            )
        return state


def _setting_name(key: str) -> str:
    return _CONFIG_PREFIX + key


# --------------------------------------------------------------------- CLI

cli = AppGroup("raftredis", help="raftredis: leader election among the instances of this app.")


@cli.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
@click.option("--timeout", default=5.0, show_default=True, help="Seconds to wait for Redis.")
def status_command(as_json: bool, timeout: float) -> None:
    """Print the members of this app's kind and its leader (without joining the kind)."""
    state = current_app.extensions.get(EXTENSION_KEY)
    if not isinstance(state, _AppState):
        raise click.ClickException("RaftRedis.init_app() was not called for this app")
    settings = state.lazy.settings
    try:
        status = read_status(
            redis=settings.redis,
            kind=settings.kind,
            key_prefix=settings.key_prefix,
            timeout=timeout,
        )
    except Exception as exc:
        raise click.ClickException(f"could not read the status from Redis: {exc}") from exc
    where = describe(connection_spec(settings.redis))
    click.echo(
        json.dumps(status.to_json(), indent=2, default=str)
        if as_json
        else format_status(status, where)
    )
