"""Framework integrations, and the pieces they share.

* :mod:`raftredis.contrib.flask`: the ``RaftRedis`` Flask extension;
* :mod:`raftredis.contrib.django`: a Django app (``INSTALLED_APPS``).

Importing this package imports neither Flask nor Django. What is here serves
any integration with a pre-fork server (gunicorn, uWSGI):

* :data:`SETTING_KEYS` names a setting (``KIND``, ``LEASE_TTL``, ``SECRET``...)
  for every keyword of ``Candidate()``, read from its signature;
  :func:`parse_settings` checks settings and turns them into ``Candidate``
  keyword arguments, with messages that name the setting at fault, and
  :func:`unknown_settings` refuses the keys that are not settings;
* :class:`LazyCandidate` is this process's Candidate: built and started on
  first use, so never in a process that only forks workers
  (``gunicorn --preload``), and built anew in a forked child;
* :class:`Hooks` keeps receivers and ``while_leader`` functions registered at
  import time, and attaches them to every Candidate built later;
* :func:`read_status` reads the members and the leader of a kind without
  joining it (for status commands).
"""

from __future__ import annotations

import atexit
import difflib
import inspect
import json
import logging
import os
import re
import threading
import time
import weakref
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import datetime, timezone
from types import MappingProxyType
from typing import Any, TypeVar

import redis as redis_py

from .. import signals
from ..candidate import Candidate
from ..connection import connection_spec
from ..errors import ConfigurationError, NotRunningError
from ..leadership import LeaderFunction
from ..observe import Snapshot, read_kind
from ..timing import Timings

__all__ = [
    "SETTING_KEYS",
    "TIMING_KEYS",
    "Hooks",
    "LazyCandidate",
    "SettingProblem",
    "Settings",
    "closest_setting",
    "format_status",
    "parse_settings",
    "read_status",
    "unknown_settings",
]

log = logging.getLogger("raftredis.contrib")

F = TypeVar("F", bound=Callable[..., Any])

# Candidate keywords whose setting is not named after them (the names of the first
# release, kept): every other setting is its keyword in upper case.
_RENAMED = {"redis": "URL", "key_prefix": "PREFIX"}


def _derive_setting_keys() -> dict[str, str]:
    """Setting name -> keyword, for every keyword ``Candidate()`` takes, in its order."""
    parameters = list(inspect.signature(Candidate.__init__).parameters.values())[1:]  # no self
    return {
        _RENAMED.get(p.name, p.name.upper()): p.name
        for p in parameters
        if p.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    }


#: Setting name (as in ``RAFTREDIS_KIND`` or ``RAFTREDIS["KIND"]``) -> Candidate keyword.
#: Read from the signature of ``Candidate.__init__``, so every keyword is a setting: its
#: name in upper case, except ``URL`` (``redis``) and ``PREFIX`` (``key_prefix``).
SETTING_KEYS: Mapping[str, str] = MappingProxyType(_derive_setting_keys())
#: The settings that are timings, checked together by :meth:`raftredis.Timings.from_lease`.
TIMING_KEYS: tuple[str, ...] = tuple(
    key for key, keyword in SETTING_KEYS.items() if keyword in {f.name for f in fields(Timings)}
)
# Core error messages name Candidate keywords; these are spelled as setting names. "redis"
# is left alone, and so are the keywords that are plain words too ("a secret must...",
# "a random id") unless they open the message or come before "=" (see _keywords_in).
_KEY_OF = {keyword: key for key, keyword in SETTING_KEYS.items() if keyword != "redis"}
_KEYWORD_RE = re.compile(r"\b(" + "|".join(sorted(_KEY_OF, key=len, reverse=True)) + r")\b")

#: Seconds between two implicit start attempts after one failed (Redis down, say),
#: so that every request does not wait for its own failed connection.
RETRY_AFTER = 5.0


# --------------------------------------------------------------- settings


@dataclass(frozen=True)
class SettingProblem:
    """One thing wrong with the settings: ``key`` is the setting at fault (``"KIND"``).

    ``unknown`` is true when ``key`` is not a setting at all (a typo, say).
    """

    key: str
    message: str
    hint: str = ""
    unknown: bool = False


@dataclass(frozen=True)
class Settings:
    """Checked settings: the Candidate's keyword arguments, or the problems found.

    ``meta`` may be a callable: it is then called when each Candidate is built,
    in the process that runs it (so it can report that worker's pid).
    """

    kwargs: Mapping[str, Any]
    meta: Any = None
    problems: tuple[SettingProblem, ...] = ()

    def __repr__(self) -> str:
        # Settings end up in logs and test reports: never show the secret.
        shown = {k: "<hidden>" if k == "secret" else v for k, v in self.kwargs.items()}
        return f"Settings(kwargs={shown!r}, meta={self.meta!r}, problems={self.problems!r})"

    @property
    def ok(self) -> bool:
        """True when there is no problem."""
        return not self.problems

    @property
    def kind(self) -> str:
        """The kind (``KIND``)."""
        return str(self.kwargs.get("kind", ""))

    @property
    def redis(self) -> Any:
        """Where Redis is, as passed to ``Candidate(redis=...)``."""
        return self.kwargs.get("redis")

    @property
    def key_prefix(self) -> str:
        """The key prefix (``PREFIX``)."""
        return str(self.kwargs.get("key_prefix", "raftredis"))

    def candidate_kwargs(self) -> dict[str, Any]:
        """The keyword arguments of a new Candidate (``meta`` called if callable)."""
        if self.problems:
            raise ConfigurationError(self.problems[0].message)
        kwargs = dict(self.kwargs)
        kwargs["meta"] = self.meta() if callable(self.meta) else self.meta
        return kwargs

    def error(self) -> ConfigurationError:
        """One ``ConfigurationError`` listing every problem."""
        lines = [p.message + (f" ({p.hint})" if p.hint else "") for p in self.problems]
        return ConfigurationError("; ".join(lines))


def parse_settings(
    values: Mapping[str, Any],
    *,
    name: Callable[[str], str] = str,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Check raftredis settings and turn them into ``Candidate`` keyword arguments.

    ``values`` maps the keys of :data:`SETTING_KEYS` (``"KIND"``,
    ``"LEASE_TTL"``, ``"SECRET"``...) to values; other keys are ignored here
    (see :func:`unknown_settings`), and so are ``None`` values (the default is
    used). ``name(key)`` spells a key in messages, for example
    ``RAFTREDIS_KIND`` for Flask. Without ``URL``, the ``REDIS_URL``
    environment variable is used if set, else ``localhost:6379``.

    Nothing is connected: every check is local. Returns :class:`Settings`,
    whose ``problems`` say what to change, each naming its setting.
    """
    env = os.environ if environ is None else environ
    problems: list[SettingProblem] = []
    given = {k: v for k, v in values.items() if k in SETTING_KEYS and v is not None}
    kwargs: dict[str, Any] = {}

    def check(*keys: str) -> None:
        """Build a throwaway Candidate from ``keys`` alone (no I/O), so that each problem
        is reported under its own name; the first key is the default culprit."""
        arguments = {SETTING_KEYS[k]: given[k] for k in keys if k in given}
        try:
            Candidate(**{"kind": "x", **arguments})
            return
        except ConfigurationError as exc:
            problem = _problem(str(exc), name, keys)
        except (TypeError, ValueError) as exc:  # a check that does not say which keyword
            problem = SettingProblem(keys[0], f"{name(keys[0])} is not valid: {exc}")
        if problem not in problems:  # a bad MAX_MESSAGE_BYTES fails the META check too
            problems.append(problem)

    kind = given.get("KIND")
    if kind is None or kind == "":
        problems.append(
            SettingProblem(
                "KIND",
                f"{name('KIND')} is not set",
                "the name shared by every instance of this service, such as 'my-service'",
            )
        )
    else:
        kwargs["kind"] = kind
        check("KIND")

    url, url_name = given.get("URL"), name("URL")
    if url is None and env.get("REDIS_URL"):
        url, url_name = env["REDIS_URL"], "the REDIS_URL environment variable"
    if url is not None:
        if not isinstance(url, (str, Mapping, redis_py.Redis)):
            problems.append(
                SettingProblem(
                    "URL",
                    f"{url_name} must be a URL string, got {type(url).__name__} {url!r}",
                    "such as 'redis://localhost:6379/0' (a dict or a redis.Redis work too)",
                )
            )
        else:
            try:
                connection_spec(url)
                kwargs["redis"] = url
            except ConfigurationError as exc:
                problems.append(SettingProblem("URL", f"{url_name}: {exc}"))

    timings = {SETTING_KEYS[k]: given[k] for k in TIMING_KEYS if k in given}
    try:
        Timings.from_lease(**timings)
        kwargs.update(timings)
    except ConfigurationError as exc:
        culprits = [k for k in TIMING_KEYS if k in given] or list(TIMING_KEYS)
        problems.append(_problem(str(exc), name, culprits))

    # Every other setting, those of future Candidate keywords included, on its own.
    for key in SETTING_KEYS:
        if key in given and key not in ("KIND", "URL", "META", *TIMING_KEYS):
            kwargs[SETTING_KEYS[key]] = given[key]
            check(key)
    meta = given.get("META")
    if meta is not None and not callable(meta):  # a callable is called (and checked) later
        check("META", "MAX_MESSAGE_BYTES")
    return Settings(kwargs, meta, tuple(problems))


def unknown_settings(
    keys: Iterable[str],
    *,
    own_keys: Collection[str] = (),
    name: Callable[[str], str] = str,
    listed: Callable[[str], str] | None = None,
) -> tuple[SettingProblem, ...]:
    """A problem for each of ``keys`` that is neither a setting nor one of ``own_keys``
    (an integration's own settings, such as ``AUTOSTART``).

    Each message names the key, the setting it most likely meant (see
    :func:`closest_setting`) and every valid key, spelled by ``listed``
    (default: ``name``). No I/O.
    """
    valid = sorted({*SETTING_KEYS, *own_keys})
    spell = name if listed is None else listed
    problems = []
    for key in keys:
        if key in valid:
            continue
        close = closest_setting(key, valid)
        guess = f" (did you mean {name(close)}?)" if close else ""
        message = (
            f"{name(key)} is not a raftredis setting{guess}; "
            f"the settings are {', '.join(spell(k) for k in valid)}"
        )
        problems.append(SettingProblem(key, message, unknown=True))
    return tuple(problems)


def closest_setting(key: str, valid: Iterable[str]) -> str | None:
    """The setting of ``valid`` that a misspelt ``key`` most likely meant, or None.

    The same name in other case, the setting of a Candidate keyword named
    otherwise (``REDIS`` -> ``URL``, ``KEY_PREFIX`` -> ``PREFIX``), else the
    closest name (:func:`difflib.get_close_matches`).
    """
    names = list(valid)
    for guess in (key.upper(), _RENAMED.get(key.lower())):
        if guess in names:
            return guess
    close = difflib.get_close_matches(key.upper(), names, n=1)
    return close[0] if close else None


def _keywords_in(message: str) -> list[re.Match[str]]:
    """Where ``message`` uses a Candidate keyword as one: always for a snake_case
    keyword, and for a plain word (``kind``, ``secret``...) only at the start of the
    message or before ``=``."""
    return [
        m
        for m in _KEYWORD_RE.finditer(message)
        if "_" in m.group(1) or m.start() == 0 or message.startswith("=", m.end())
    ]


def _problem(message: str, name: Callable[[str], str], checked: Sequence[str]) -> SettingProblem:
    """A problem from a core error message about the settings ``checked``.

    The culprit is the first of them the message names (else the first of
    them); keywords are spelled as setting names, and a message that does not
    name its culprit is prefixed with it.
    """
    found = _keywords_in(message)
    named = [_KEY_OF[m.group(1)] for m in found if _KEY_OF[m.group(1)] in checked]
    key = named[0] if named else checked[0]
    text = message
    for m in reversed(found):
        text = text[: m.start()] + name(_KEY_OF[m.group(1)]) + text[m.end() :]
    if name(key) not in text:
        text = f"{name(key)}: {text}"
    return SettingProblem(key, text)


# ------------------------------------------------------ receivers, leader work


def _check_event(event: str) -> None:
    try:
        signals.by_name(event)
    except KeyError as exc:
        raise ValueError(exc.args[0]) from None


class Hooks:
    """Receivers and ``while_leader`` functions for Candidates that do not exist yet.

    Register them at import time (``hooks.on("elected", fn)``,
    ``@hooks.while_leader``); each :class:`LazyCandidate` using these hooks
    attaches them to its Candidate when it builds one, and functions registered
    later are attached to the Candidates already built in this process.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._receivers: list[tuple[str, Callable[..., Any]]] = []
        self._leader_functions: list[LeaderFunction] = []
        self._lazies: weakref.WeakSet[LazyCandidate] = weakref.WeakSet()
        _all_hooks.add(self)

    def on(self, event: str, receiver: F | None = None) -> Any:
        """Connect ``receiver`` to a signal of every Candidate built with these hooks.

        ``event`` is a signal name or a node-raft-redis event name, as for
        :meth:`raftredis.Candidate.on` (``ValueError`` for an unknown one).
        Usable as a decorator. Returns the receiver.
        """
        _check_event(event)

        def connect(fn: F) -> F:
            with self._lock:
                self._receivers.append((event, fn))
                for lazy in list(self._lazies):
                    candidate = lazy.current()
                    if candidate is not None:
                        candidate.on(event, fn)
            return fn

        return connect(receiver) if receiver is not None else connect

    def while_leader(self, fn: LeaderFunction) -> LeaderFunction:
        """Run ``fn(stop_event)`` in its own thread each time a Candidate built here leads.

        See :meth:`raftredis.Candidate.while_leader`. Usable as a decorator;
        ``TypeError`` if ``fn`` is not callable.
        """
        if not callable(fn):
            raise TypeError(f"while_leader needs a callable, got {fn!r}")
        with self._lock:
            self._leader_functions.append(fn)
            for lazy in list(self._lazies):
                candidate = lazy.current()
                if candidate is not None:
                    candidate.while_leader(lazy.wrap(fn))
        return fn

    def _build(self, lazy: LazyCandidate) -> Candidate:
        # Built and published under the lock, so on()/while_leader() never miss it.
        with self._lock:
            candidate = Candidate(**lazy.settings.candidate_kwargs())
            for event, fn in self._receivers:
                candidate.on(event, fn)
            for fn in self._leader_functions:
                candidate.while_leader(lazy.wrap(fn))
            lazy._candidate = candidate
            lazy._pid = os.getpid()
            self._lazies.add(lazy)
        return candidate

    def _after_fork(self) -> None:
        self._lock = threading.Lock()


# ----------------------------------------------------------- lazy candidate


class LazyCandidate:
    """This process's Candidate for one configuration, built and started on first use.

    Nothing happens when it is created: no Candidate, no connection, no thread.
    :meth:`get` builds the Candidate (attaching ``hooks``) and starts it;
    :meth:`try_start` does the same for implicit starts (a request), without
    raising or waiting for another thread's start. In a forked child the
    parent's Candidate is forgotten and a new one, with an id of its own, is
    built on first use there.

    ``wrap(fn)`` adapts each ``while_leader`` function (Flask pushes an
    application context around it, for example).
    """

    def __init__(
        self,
        settings: Settings,
        hooks: Hooks,
        *,
        wrap: Callable[[LeaderFunction], LeaderFunction] | None = None,
        label: str = "raftredis",
        retry_after: float = RETRY_AFTER,
    ) -> None:
        if not settings.ok:
            raise settings.error()
        self.settings = settings
        self.label = label
        self.retry_after = retry_after
        self.last_error: BaseException | None = None
        self._hooks = hooks
        self._wrap = wrap
        self._lock = threading.Lock()
        self._candidate: Candidate | None = None
        self._pid = os.getpid()
        self._retry_at = 0.0
        _all_lazies.add(self)

    def wrap(self, fn: LeaderFunction) -> LeaderFunction:
        """``fn`` as attached to this Candidate (see the class docstring)."""
        return fn if self._wrap is None else self._wrap(fn)

    def current(self) -> Candidate | None:
        """This process's Candidate if it was built (running or not), else None. No I/O."""
        candidate = self._candidate
        return candidate if candidate is not None and self._pid == os.getpid() else None

    def running(self) -> Candidate | None:
        """This process's Candidate if it runs, else None. No I/O."""
        candidate = self.current()
        return candidate if candidate is not None and candidate.is_running else None

    def get(self, *, start: bool = True, timeout: float | None = None) -> Candidate:
        """This process's Candidate, built if needed, and started if ``start``.

        Raises what ``Candidate.start()`` raises (``BackendError`` when Redis
        cannot be reached); the next call then tries again with a new Candidate.
        """
        with self._lock:
            return self._get(start, timeout)

    def try_start(self) -> Candidate | None:
        """Start this process's Candidate if it is not running; never raises.

        Returns the running Candidate, or None when it could not start (logged;
        the next attempt comes :attr:`retry_after` seconds later), when another
        thread is starting it right now, or when the interpreter is exiting.
        """
        candidate = self.running()
        if candidate is not None:
            return candidate
        if _exiting or time.monotonic() < self._retry_at:
            return None
        if not self._lock.acquire(blocking=False):
            return None  # another thread is starting it: do not queue requests behind it
        try:
            return self._get(True, None)
        except Exception as exc:
            self.last_error = exc
            self._retry_at = time.monotonic() + self.retry_after
            log.warning(
                "%s: could not start the raftredis Candidate of kind %r (retrying in %g s): %s",
                self.label,
                self.settings.kind,
                self.retry_after,
                exc,
            )
            return None
        finally:
            self._lock.release()

    def stop(self, timeout: float | None = None) -> None:
        """Stop this process's Candidate (resign, leave); the next use builds a new one."""
        with self._lock:
            candidate = self.current()
            self._candidate = None
        if candidate is not None:
            candidate.stop(timeout)

    def _get(self, start: bool, timeout: float | None) -> Candidate:
        if self._pid != os.getpid():
            self._forget()  # a fork that bypassed the at-fork hooks
        candidate = self._candidate or self._hooks._build(self)
        if start and not candidate.is_running:
            if _exiting:
                raise NotRunningError("the interpreter is exiting: not starting a Candidate")
            try:
                try:
                    candidate.start(timeout)
                except NotRunningError:
                    # Stopped by someone (a Candidate runs only once): start a new one.
                    candidate = self._hooks._build(self)
                    candidate.start(timeout)
            except BaseException:
                # A Candidate whose start() failed may not start again: build anew next time.
                self._candidate = None
                raise
            self.last_error = None
            self._retry_at = 0.0
        return candidate

    def _forget(self) -> None:
        self._candidate = None
        self._pid = os.getpid()
        self._retry_at = 0.0
        self.last_error = None

    def _after_fork(self) -> None:
        # The child is single-threaded here: a lock held by a parent thread is replaced.
        self._lock = threading.Lock()
        self._forget()


_all_hooks: weakref.WeakSet[Hooks] = weakref.WeakSet()
_all_lazies: weakref.WeakSet[LazyCandidate] = weakref.WeakSet()
_exiting = False


def _after_fork_in_child() -> None:
    for hooks in list(_all_hooks):
        hooks._after_fork()
    for lazy in list(_all_lazies):
        lazy._after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


@atexit.register
def _refuse_starts_at_exit() -> None:
    # Registered after raftredis.candidate's own hook, so it runs before it: no request
    # thread starts a new Candidate while the running ones are stopped.
    global _exiting
    _exiting = True


# ------------------------------------------------------------------ status


def read_status(
    *, redis: Any = None, kind: str, key_prefix: str = "raftredis", timeout: float = 5.0
) -> Snapshot:
    """The kind's live members and leader, read without joining it (see
    :func:`raftredis.observe.read_kind`)."""
    return read_kind(redis, kind=kind, key_prefix=key_prefix, timeout=timeout)


def format_status(status: Snapshot, where: str = "") -> str:
    """``status`` as a few lines of text for a terminal (``where``: the Redis it came from)."""

    def when(seconds: float | None) -> str:
        if not seconds or seconds <= 0:
            return "?"
        moment = datetime.fromtimestamp(seconds, tz=timezone.utc)
        return moment.strftime("%Y-%m-%d %H:%M:%SZ")

    leader = status.leader
    named = "none" if leader is None else f"{leader.id} (term {leader.term})"
    lines = [
        f"kind: {status.kind}" + (f" ({where})" if where else ""),
        f"leader: {named}",
        f"instances: {len(status.members)}",
    ]
    for m in status.members:
        meta = json.dumps(m.meta, sort_keys=True, default=str)
        lines.append(f"  {m.id}  {m.state:<8}  joined {when(m.joined_at)}  meta {meta}")
    return "\n".join(lines)
