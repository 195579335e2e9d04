"""Settings of the example site. Environment: ``REDIS_URL`` (default localhost:6379),
``RAFTREDIS_KIND`` (default ``django-example``), ``RAFTREDIS_LEASE_TTL`` (default 3)."""

from __future__ import annotations

import os
import socket
from typing import Any

SECRET_KEY = "example-site-not-a-secret"
DEBUG = True
ALLOWED_HOSTS = ["*"]
USE_TZ = True
ROOT_URLCONF = "example_site.urls"
INSTALLED_APPS = [
    "raftredis.contrib.django",
    "example_site.apps.ExampleSiteConfig",
]
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}


def instance_meta() -> dict[str, Any]:
    """Called in the process that runs the Candidate: that process' pid."""
    return {"pid": os.getpid(), "host": socket.gethostname()}


RAFTREDIS = {
    "KIND": os.environ.get("RAFTREDIS_KIND", "django-example"),
    # "URL": "redis://localhost:6379/0",   # default: $REDIS_URL, else localhost:6379
    "LEASE_TTL": float(os.environ.get("RAFTREDIS_LEASE_TTL", "3")),
    "META": instance_meta,
}
