"""Settings of the framework integrations: one for every Candidate option, checked locally.

:data:`SETTING_KEYS` names a setting (``KIND``, ``LEASE_TTL``, ``SECRET``...)
for every option of :meth:`Config.from_options() <raftredis.config.Config.from_options>`,
read from its signature. :func:`parse_settings` checks settings with
:class:`~raftredis.config.Config` itself and reports each problem under the
setting its :attr:`ConfigurationError.option <raftredis.ConfigurationError.option>`
names; :func:`unknown_settings` refuses the keys that are not settings.
"""

from __future__ import annotations

import difflib
import inspect
import os
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, fields
from types import MappingProxyType
from typing import Any

import redis as redis_py

from ..config import Config
from ..errors import ConfigurationError
from ..timing import Timings

__all__ = [
    "SETTING_KEYS",
    "TIMING_KEYS",
    "SettingProblem",
    "Settings",
    "closest_setting",
    "parse_settings",
    "unknown_settings",
]

# Options whose setting is not named after them (the names of the first release,
# kept): every other setting is its option in upper case.
_RENAMED = {"redis": "URL", "key_prefix": "PREFIX"}


def _derive_setting_keys() -> dict[str, str]:
    """Setting name -> option, for every option ``Config.from_options()`` takes, in its order."""
    parameters = inspect.signature(Config.from_options).parameters.values()
    return {
        _RENAMED.get(p.name, p.name.upper()): p.name
        for p in parameters
        if p.kind is inspect.Parameter.KEYWORD_ONLY
    }


#: Setting name (as in ``RAFTREDIS_KIND`` or ``RAFTREDIS["KIND"]``) -> Candidate keyword.
#: Read from the signature of :meth:`Config.from_options`, so every option is a setting:
#: its name in upper case, except ``URL`` (``redis``) and ``PREFIX`` (``key_prefix``).
SETTING_KEYS: Mapping[str, str] = MappingProxyType(_derive_setting_keys())
#: The settings that are timings, checked together by :meth:`raftredis.Timings.from_lease`.
TIMING_KEYS: tuple[str, ...] = tuple(
    key for key, keyword in SETTING_KEYS.items() if keyword in {f.name for f in fields(Timings)}
)
_KEY_OF = {keyword: key for key, keyword in SETTING_KEYS.items()}
# Core messages may name other options beside the one at fault ("renew_deadline
# (2 s) must be shorter than lease_ttl"): those that are identifiers (with "_",
# never plain words such as "secret") are spelled as settings in what users see.
_IDENTIFIERS = sorted((k for k in _KEY_OF if "_" in k), key=len, reverse=True)
# Where a kind is needed to check the other settings alone (KIND is checked on its own).
_PLACEHOLDER_KIND = "x"


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

    def config(self) -> Config:
        """A new :class:`~raftredis.config.Config` of these settings (``meta`` called
        if callable). A new one each time: each Candidate has connections of its own."""
        return Config.from_options(**self.candidate_kwargs())

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
    given = {k: v for k, v in values.items() if k in SETTING_KEYS and v is not None}
    problems: list[SettingProblem] = []
    url_name = name("URL")
    if "URL" not in given and env.get("REDIS_URL"):
        given["URL"], url_name = env["REDIS_URL"], "the REDIS_URL environment variable"

    def spell(key: str) -> str:
        return url_name if key == "URL" else name(key)

    kind = given.pop("KIND", "")
    if kind == "":
        problems.append(
            SettingProblem(
                "KIND",
                f"{name('KIND')} is not set",
                "the name shared by every instance of this service, such as 'my-service'",
            )
        )
    url = given.get("URL")
    if url is not None and not isinstance(url, (str, Mapping, redis_py.Redis)):
        problems.append(
            SettingProblem(
                "URL",
                f"{spell('URL')} must be a URL string, got {type(url).__name__} {url!r}",
                "such as 'redis://localhost:6379/0' (a dict or a redis.Redis work too)",
            )
        )
        del given["URL"]
    meta = given.pop("META", None)
    checked = {SETTING_KEYS[k]: v for k, v in given.items()}
    if not callable(meta):  # a callable is called (and checked) for each Candidate
        checked["meta"] = meta
    checked["kind"] = _PLACEHOLDER_KIND if kind == "" else kind
    problems.extend(_problems(checked, spell))
    kwargs = {SETTING_KEYS[k]: v for k, v in given.items()}
    if kind != "":
        kwargs["kind"] = kind
    return Settings(kwargs, meta, tuple(problems))


def _problems(options: dict[str, Any], spell: Callable[[str], str]) -> list[SettingProblem]:
    """What is wrong with ``options``, one problem per setting at fault.

    ``Config.from_options()`` stops at the first problem, so when the whole
    fails, each group of options is checked on its own: every option alone,
    except the timings (checked together) and ``meta`` (with
    ``max_message_bytes``, which bounds it). A problem only the whole has
    (``fast_failover`` with a Sentinel URL) is reported as the whole's.
    """
    failure = _failure(options)
    if failure is None:
        return []
    timings = [SETTING_KEYS[k] for k in TIMING_KEYS]
    groups = [["kind"], timings, ["meta", "max_message_bytes"]]
    groups += [[o] for o in options if o not in ("kind", "meta", *timings)]
    found: list[_Failure] = []
    for group in groups:
        alone = {o: options[o] for o in group if o in options}
        if not alone:
            continue
        failed = _failure({"kind": _PLACEHOLDER_KIND, **alone}, group[0])
        if failed is not None and failed not in found:  # a bad max_message_bytes fails twice
            found.append(failed)
    return [_spelled(f, spell) for f in found or [failure]]


@dataclass(frozen=True)
class _Failure:
    option: str
    message: str


def _failure(options: dict[str, Any], culprit: str = "kind") -> _Failure | None:
    """The first problem of ``options`` and the option at fault (else ``culprit``), or None."""
    try:
        Config.from_options(**options)
        return None
    except ConfigurationError as exc:
        option = exc.option if exc.option is not None and exc.option in _KEY_OF else culprit
        return _Failure(option, str(exc))
    except (TypeError, ValueError) as exc:  # a check that does not say which option
        return _Failure(culprit, f"{culprit} is not valid: {exc}")


def _spelled(failure: _Failure, spell: Callable[[str], str]) -> SettingProblem:
    """The problem as users see it: opening with its setting, options spelled as settings."""
    key = _KEY_OF[failure.option]
    text = failure.message
    if failure.option == "redis":  # URL messages name redis= parts, never settings
        return SettingProblem(key, f"{spell(key)}: {text}")
    for identifier in _IDENTIFIERS:
        text = text.replace(identifier, spell(_KEY_OF[identifier]))
    plain = failure.option
    if text.startswith(plain) and text[len(plain) : len(plain) + 1] in (" ", "="):
        text = spell(key) + text[len(plain) :]  # "secret must be...", "id='a b' is..."
    if not text.startswith(spell(key)):
        text = f"{spell(key)}: {text}"
    return SettingProblem(key, text)


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
