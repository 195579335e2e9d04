"""System checks of ``settings.RAFTREDIS`` (``manage.py check``).

======================  ====================================================
id                      what
======================  ====================================================
``raftredis.E001``      ``RAFTREDIS`` is missing or is not a dict
``raftredis.E002``      ``KIND`` is missing or not a valid kind name
``raftredis.E003``      ``URL`` (or ``$REDIS_URL``) is not a Redis URL
``raftredis.E004``      the timings cannot work (``LEASE_TTL``, ``RENEW_*``...)
``raftredis.E005``      ``PREFIX``, ``ID``, ``MAX_MESSAGE_BYTES`` or ``META``
``raftredis.E006``      ``AUTOSTART`` or ``START_IN_COMMANDS``
``raftredis.W001``      an unknown key (a typo?)
======================  ====================================================
"""

from __future__ import annotations

from typing import Any

from django.core import checks

from .. import TIMING_KEYS
from . import load_settings, suggest_key

__all__ = ["check_settings"]

_IDS = {
    "": "raftredis.E001",
    "KIND": "raftredis.E002",
    "URL": "raftredis.E003",
    **dict.fromkeys(TIMING_KEYS, "raftredis.E004"),
    **dict.fromkeys(("PREFIX", "ID", "MAX_MESSAGE_BYTES", "META"), "raftredis.E005"),
    **dict.fromkeys(("AUTOSTART", "START_IN_COMMANDS"), "raftredis.E006"),
}
_WHERE = "settings.RAFTREDIS"


@checks.register("raftredis")
def check_settings(app_configs: Any = None, **kwargs: Any) -> list[Any]:
    """Errors for settings that cannot work, warnings for unknown keys. No I/O."""
    config = load_settings()
    messages: list[Any] = [
        checks.Error(
            problem.message,
            hint=problem.hint or None,
            obj=_WHERE,
            id=_IDS.get(problem.key, "raftredis.E005"),
        )
        for problem in config.problems
    ]
    for key in config.unknown_keys:
        close = suggest_key(key)
        messages.append(
            checks.Warning(
                f"settings.RAFTREDIS has an unknown key {key!r}; it is ignored",
                hint=f"did you mean {close!r}?" if close else None,
                obj=_WHERE,
                id="raftredis.W001",
            )
        )
    return messages
