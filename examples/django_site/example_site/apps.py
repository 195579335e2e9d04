"""The example site's own app: registers its leader-only job at ready()."""

from __future__ import annotations

from django.apps import AppConfig


class ExampleSiteConfig(AppConfig):
    name = "example_site"

    def ready(self) -> None:
        from . import jobs  # noqa: F401 - registers the while_leader function
