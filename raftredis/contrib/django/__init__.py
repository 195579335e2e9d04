"""Django integration: one Candidate per serving process, started on first use.

Add the app and a ``RAFTREDIS`` setting::

    INSTALLED_APPS = [..., "raftredis.contrib.django"]
    RAFTREDIS = {
        "KIND": "my-site",                       # required
        "URL": "redis://localhost:6379/0",       # default: $REDIS_URL, else localhost:6379
        "LEASE_TTL": 3.0,                        # any Candidate keyword, in upper case
    }

Then, anywhere (also at import time)::

    import raftredis.contrib.django as raft

    @raft.while_leader
    def scheduler(stop):
        while not stop.wait(60):
            ...   # runs in exactly one process of the whole site

    raft.is_leader()      # in a view: does this process lead now?
    raft.candidate()      # this process's Candidate (get_instances(), message_*...)

When the Candidate starts (``ready()`` never starts it in a process that
forks, which would leave the workers with a Candidate they cannot use):

* in a web server process (gunicorn, uWSGI, daphne, uvicorn, mod_wsgi:
  anything but ``manage.py``/``django-admin``): lazily, at the first request
  (Django's ``request_started`` signal) or the first call of
  :func:`candidate` or :func:`is_leader`. ``gunicorn --preload`` is safe:
  the master never serves a request;
* in the management commands listed in ``START_IN_COMMANDS`` (default
  ``["runserver"]``): at ``ready()``, in the process that serves; with the
  autoreloader that is the child (``RUN_MAIN=true``), never the parent that
  watches the files;
* in every other management command (``migrate``, ``shell``, ``test``,
  ``check``...): never by itself. :func:`candidate` then returns a Candidate
  that is not started; call :func:`start` to take part explicitly;
* nowhere with ``"AUTOSTART": False``, except through :func:`start`.

The other keys of ``RAFTREDIS`` are those of :data:`raftredis.contrib.SETTING_KEYS`,
one for every ``Candidate`` keyword (``META``, ``ID``, ``PREFIX``, ``SECRET``,
``MIN_REPLICAS``, ``RENEW_INTERVAL``...); any other key is an error.
``manage.py check`` reports bad settings, and ``manage.py raftredis_status``
prints the members and the leader. See ``docs/django.md``.
"""

from __future__ import annotations

import functools
import logging
import os
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from ...candidate import Candidate
from ...leadership import LeaderFunction, Leadership
from .. import (
    SETTING_KEYS,
    Hooks,
    LazyCandidate,
    SettingProblem,
    Settings,
    closest_setting,
    parse_settings,
    unknown_settings,
)

__all__ = [
    "DjangoSettings",
    "candidate",
    "command_name",
    "is_leader",
    "load_settings",
    "on",
    "start",
    "stop",
    "while_leader",
]

log = logging.getLogger("raftredis.contrib.django")

F = TypeVar("F", bound=Callable[..., Any])

#: Commands that start the Candidate at ready() unless ``START_IN_COMMANDS`` says otherwise.
DEFAULT_START_IN_COMMANDS = ("runserver",)
_OWN_KEYS = ("AUTOSTART", "START_IN_COMMANDS")
_MANAGE_SCRIPTS = ("manage.py", "django-admin", "django-admin.py")


def _setting_name(key: str) -> str:
    return f"RAFTREDIS[{key!r}]" if key else "settings.RAFTREDIS"


# ---------------------------------------------------------------- settings


@dataclass(frozen=True)
class DjangoSettings:
    """``settings.RAFTREDIS``, checked: see :func:`load_settings`."""

    settings: Settings
    autostart: bool
    start_in_commands: tuple[str, ...]
    problems: tuple[SettingProblem, ...]
    unknown_keys: tuple[str, ...]

    @property
    def ok(self) -> bool:
        """True when there is no problem (an unknown key is one)."""
        return not self.problems


def load_settings(value: Any = None) -> DjangoSettings:
    """Read and check ``settings.RAFTREDIS`` (or ``value``, a dict of the same shape).

    No I/O. Never raises for bad values: they are listed in ``problems``, each
    naming its key (the system check reports them). A key that is not a setting
    is a problem too (listed in ``unknown_keys`` as well).
    """
    if value is None:
        from django.conf import settings

        value = getattr(settings, "RAFTREDIS", None)
    if not isinstance(value, Mapping):
        problem = SettingProblem(
            "",
            "settings.RAFTREDIS is not set"
            if value is None
            else f"settings.RAFTREDIS must be a dict, not {type(value).__name__}",
            "RAFTREDIS = {'KIND': 'my-site', 'URL': 'redis://localhost:6379/0'}",
        )
        empty = Settings({}, problems=(problem,))
        return DjangoSettings(empty, False, DEFAULT_START_IN_COMMANDS, (problem,), ())
    parsed = parse_settings(value, name=_setting_name)
    unknown = unknown_settings(
        [str(k) for k in value], own_keys=_OWN_KEYS, name=_setting_name, listed=repr
    )
    problems = [*unknown, *parsed.problems]
    autostart = value.get("AUTOSTART", True)
    if not isinstance(autostart, bool):
        problems.append(
            SettingProblem(
                "AUTOSTART",
                f"{_setting_name('AUTOSTART')} must be True or False, not {autostart!r}",
            )
        )
        autostart = False
    commands = value.get("START_IN_COMMANDS", DEFAULT_START_IN_COMMANDS)
    if isinstance(commands, str) or not (
        isinstance(commands, Sequence) and all(isinstance(c, str) for c in commands)
    ):
        problems.append(
            SettingProblem(
                "START_IN_COMMANDS",
                f"{_setting_name('START_IN_COMMANDS')} must be a list of command names, "
                f"not {commands!r}",
                "such as ['runserver']",
            )
        )
        commands = DEFAULT_START_IN_COMMANDS
    unknown_keys = tuple(sorted(p.key for p in unknown))
    return DjangoSettings(parsed, autostart, tuple(commands), tuple(problems), unknown_keys)


def suggest_key(key: str) -> str | None:
    """The known key closest to a misspelt one, if any is close."""
    return closest_setting(key, [*SETTING_KEYS, *_OWN_KEYS])


# ------------------------------------------------------------- processes


def command_name(argv: Sequence[str]) -> str | None:
    """The management command this process runs (``"migrate"``), or None when it is
    not ``manage.py``/``django-admin``/``python -m django`` (a web server, say)."""
    if not argv:
        return None
    path = argv[0]
    script = os.path.basename(path)
    is_django_main = script == "__main__.py" and os.path.basename(os.path.dirname(path)) == "django"
    if script not in _MANAGE_SCRIPTS and not is_django_main:
        return None
    return next((arg for arg in argv[1:] if not arg.startswith("-")), "help")


def _reloader_parent(command: str, argv: Sequence[str], environ: Mapping[str, str]) -> bool:
    """True in the process that only watches files for an autoreloader (it never serves)."""
    if "--noreload" in argv:
        return False
    if command == "runserver":
        return environ.get("RUN_MAIN") != "true"
    if command == "runserver_plus":  # django-extensions, on werkzeug's reloader
        return environ.get("WERKZEUG_RUN_MAIN") != "true"
    return False


# ----------------------------------------------------------------- runtime

_hooks = Hooks()


@dataclass(frozen=True)
class _Runtime:
    lazy: LazyCandidate | None
    config: DjangoSettings
    command: str | None
    implicit: bool  # may this process start the Candidate without an explicit start()?


_runtime: _Runtime | None = None
_runtime_lock = threading.Lock()
_init_lock = threading.Lock()


def _configure(
    value: Any = None,
    argv: Sequence[str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> None:
    """Called by ``AppConfig.ready()``: read the settings, decide what this process may do."""
    global _runtime
    from django.core.signals import request_started

    argv = sys.argv if argv is None else argv
    environ = os.environ if environ is None else environ
    config = load_settings(value)
    command = command_name(argv)
    if command is None:
        implicit, eager = config.autostart, False
    elif command in config.start_in_commands:
        implicit = config.autostart and not _reloader_parent(command, argv, environ)
        eager = implicit
    else:
        implicit = eager = False
    lazy = None
    if config.ok:
        lazy = LazyCandidate(config.settings, _hooks, wrap=_closing_db_connections, label="Django")
    elif implicit:
        log.error(
            "raftredis is off in this process: settings.RAFTREDIS is invalid (%s); "
            "run 'manage.py check'",
            "; ".join(p.message for p in config.problems),
        )
    with _runtime_lock:
        old, _runtime = _runtime, _Runtime(lazy, config, command, implicit and lazy is not None)
    if old is not None and old.lazy is not None:
        old.lazy.stop(timeout=1.0)
    request_started.connect(_on_request_started, dispatch_uid="raftredis.contrib.django")
    if eager and lazy is not None:
        lazy.try_start()


def _on_request_started(sender: Any, **kwargs: Any) -> None:
    runtime = _runtime
    if runtime is not None and runtime.implicit and runtime.lazy is not None:
        runtime.lazy.try_start()


def _closing_db_connections(fn: LeaderFunction) -> LeaderFunction:
    """A ``while_leader`` thread closes its own database connections when it ends."""

    @functools.wraps(fn)
    def run(stop_event: Leadership) -> object:
        try:
            return fn(stop_event)
        finally:
            from django.db import connections

            connections.close_all()

    return run


def _ensure_configured() -> None:
    """Configure once: at ready(), or earlier when another app's ready() uses raftredis first."""
    with _init_lock:
        if _runtime is None:
            _configure()


def _lazy() -> tuple[_Runtime, LazyCandidate]:
    from django.apps import apps
    from django.core.exceptions import ImproperlyConfigured

    if _runtime is None and apps.apps_ready and apps.is_installed("raftredis.contrib.django"):
        _ensure_configured()
    runtime = _runtime
    if runtime is None:
        raise ImproperlyConfigured(
            "raftredis.contrib.django is not ready: add 'raftredis.contrib.django' to "
            "INSTALLED_APPS (and call django.setup() outside manage.py)"
        )
    if runtime.lazy is None:
        problems = "; ".join(p.message for p in runtime.config.problems)
        raise ImproperlyConfigured(f"settings.RAFTREDIS is invalid: {problems}")
    return runtime, runtime.lazy


# -------------------------------------------------------------- public API


def candidate() -> Candidate:
    """This process's Candidate, started if this process may start it by itself.

    Started in a web server process and in the ``START_IN_COMMANDS``
    commands (unless ``AUTOSTART`` is False); elsewhere returned not started
    (call :func:`start`). Raises ``ImproperlyConfigured`` for bad settings,
    and what ``Candidate.start()`` raises (``BackendError``...).
    """
    runtime, lazy = _lazy()
    return lazy.get(start=runtime.implicit)


def start(timeout: float | None = None) -> Candidate:
    """Start this process's Candidate now, in any process; returns it.

    For gunicorn's ``post_worker_init``, uWSGI's ``@postfork``, or a
    management command that should take part. Raises as ``Candidate.start()``.
    """
    return _lazy()[1].get(start=True, timeout=timeout)


def stop(timeout: float | None = None) -> None:
    """Stop this process's Candidate if it runs (resign, leave). A later use starts a new one."""
    runtime = _runtime
    if runtime is not None and runtime.lazy is not None:
        runtime.lazy.stop(timeout)


def is_leader() -> bool:
    """Whether this process leads now. Never raises: False when not running.

    Starts the Candidate first where :func:`candidate` would.
    """
    try:
        runtime, lazy = _lazy()
    except Exception:  # not installed, not ready, or bad settings: not leading
        return False
    running = lazy.try_start() if runtime.implicit else lazy.running()
    return running is not None and running.is_leader


def on(event: str, receiver: F | None = None) -> Any:
    """Connect ``receiver`` to a signal of this process's Candidate (also a decorator).

    Callable at import time: receivers are attached when the Candidate is
    built. ``event`` as for :meth:`raftredis.Candidate.on`.
    """
    return _hooks.on(event, receiver)


def while_leader(fn: LeaderFunction) -> LeaderFunction:
    """Run ``fn(stop_event)`` in its own thread each time this process is elected.

    Callable at import time, also as a decorator. The thread closes its
    database connections when ``fn`` returns. See
    :meth:`raftredis.Candidate.while_leader`.
    """
    return _hooks.while_leader(fn)
