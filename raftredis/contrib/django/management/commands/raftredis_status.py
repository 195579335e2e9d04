"""``manage.py raftredis_status``: the members of this site's kind and its leader."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from raftredis.connection import connection_spec, describe
from raftredis.contrib import format_status, read_status
from raftredis.contrib.django import load_settings


class Command(BaseCommand):
    help = (
        "Print the live members of this site's raftredis kind and its leader, "
        "read from Redis without joining the kind."
    )
    # Bad RAFTREDIS settings are reported below; other apps' checks are not our business.
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--json", action="store_true", help="print JSON instead of text")
        parser.add_argument("--kind", help="another kind than RAFTREDIS['KIND']")
        parser.add_argument(
            "--timeout", type=float, default=5.0, help="seconds to wait for Redis (default 5)"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        config = load_settings()
        settings = config.settings
        # --kind stands in for a missing or bad RAFTREDIS['KIND'], nothing else.
        problems = [p for p in config.problems if not (options["kind"] and p.key == "KIND")]
        if problems:
            raise CommandError("; ".join(p.message for p in problems))
        try:
            status = read_status(
                redis=settings.redis,
                kind=options["kind"] or settings.kind,
                key_prefix=settings.key_prefix,
                timeout=options["timeout"],
            )
        except Exception as exc:
            raise CommandError(f"could not read the status from Redis: {exc}") from exc
        if options["json"]:
            self.stdout.write(json.dumps(status.to_json(), indent=2, default=str))
        else:
            self.stdout.write(format_status(status, describe(connection_spec(settings.redis))))
