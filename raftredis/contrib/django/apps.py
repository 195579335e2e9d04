"""The Django app config of ``raftredis.contrib.django``."""

from __future__ import annotations

from django.apps import AppConfig


class RaftRedisConfig(AppConfig):
    """``INSTALLED_APPS += ["raftredis.contrib.django"]``.

    ``ready()`` reads ``settings.RAFTREDIS`` and decides whether this process
    may start its Candidate (see :mod:`raftredis.contrib.django`). It never
    raises for bad settings: ``manage.py check`` reports them.
    """

    name = "raftredis.contrib.django"
    label = "raftredis"
    verbose_name = "raftredis"

    def ready(self) -> None:
        from . import _ensure_configured, checks  # noqa: F401 - importing checks registers them

        _ensure_configured()
