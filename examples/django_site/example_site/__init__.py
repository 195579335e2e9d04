"""A minimal Django site using raftredis.contrib.django (see docs/django.md)."""
