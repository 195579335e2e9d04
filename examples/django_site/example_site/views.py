"""``/leader``: this process and its role; ``/cluster``: every member and the leader."""

from __future__ import annotations

import os

from django.http import HttpRequest, JsonResponse

import raftredis.contrib.django as raft


def leader(request: HttpRequest) -> JsonResponse:
    candidate = raft.candidate()
    return JsonResponse(
        {
            "pid": os.getpid(),
            "id": candidate.id,
            "is_leader": candidate.is_leader,
            "term": candidate.current_term,
            "leader_id": candidate.leader_id,
        }
    )


def cluster(request: HttpRequest) -> JsonResponse:
    candidate = raft.candidate()
    members = candidate.get_instances()
    return JsonResponse(
        {
            "me": candidate.id,
            "leader": next((m.id for m in members if m.is_leader), None),
            "members": [{"id": m.id, "state": m.state.value, "meta": m.meta} for m in members],
        }
    )
