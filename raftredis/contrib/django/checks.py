"""System checks of ``settings.RAFTREDIS`` (``manage.py check``).

======================  ====================================================
id                      what
======================  ====================================================
``raftredis.E001``      ``RAFTREDIS`` is missing or is not a dict
``raftredis.E002``      ``KIND`` is missing or not a valid kind name
``raftredis.E003``      ``URL`` (or ``$REDIS_URL``) is not a Redis URL
``raftredis.E004``      the timings cannot work (``LEASE_TTL``, ``RENEW_*``...)
``raftredis.E005``      any other setting (``PREFIX``, ``META``, ``SECRET``...)
``raftredis.E006``      ``AUTOSTART`` or ``START_IN_COMMANDS``
``raftredis.E007``      a key that is not a setting (a typo?)
======================  ====================================================
"""

from __future__ import annotations

from typing import Any

from django.core import checks

from .. import TIMING_KEYS
from . import _OWN_KEYS, load_settings

__all__ = ["check_settings"]

_IDS = {
    "": "raftredis.E001",
    "KIND": "raftredis.E002",
    "URL": "raftredis.E003",
    **dict.fromkeys(TIMING_KEYS, "raftredis.E004"),
    **dict.fromkeys(_OWN_KEYS, "raftredis.E006"),
}  # any other setting: E005
_WHERE = "settings.RAFTREDIS"


@checks.register("raftredis")
def check_settings(app_configs: Any = None, **kwargs: Any) -> list[Any]:
    """An error for each setting that cannot work and each key that is not one. No I/O."""
    return [
        checks.Error(
            problem.message,
            hint=problem.hint or None,
            obj=_WHERE,
            id="raftredis.E007" if problem.unknown else _IDS.get(problem.key, "raftredis.E005"),
        )
        for problem in load_settings().problems
    ]
