"""An example Flask app using raftredis: one leader among all the workers of all hosts.

Run it (against the Redis at $REDIS_URL, else localhost:6379) with gunicorn::

    cd examples/flask_app
    gunicorn -c gunicorn.conf.py app:app
    curl -s localhost:8000/leader     # the worker that answered: pid, id, is_leader, term
    curl -s localhost:8000/cluster    # every member of the kind, and the leader

or with the Flask development server (the reloader's parent never joins)::

    flask --app app run --debug

Settings come from ``FLASK_``-prefixed environment variables
(``app.config.from_prefixed_env()``): ``FLASK_RAFTREDIS_URL``,
``FLASK_RAFTREDIS_KIND``, ``FLASK_RAFTREDIS_LEASE_TTL=1``...
"""

from __future__ import annotations

import logging
import os
import socket
from typing import Any

from flask import Flask, current_app, jsonify
from flask.typing import ResponseReturnValue

from raftredis import Leadership, RaftRedisError
from raftredis.contrib.flask import RaftRedis

log = logging.getLogger(__name__)

raft = RaftRedis()


def worker_meta() -> dict[str, Any]:
    """Meta of this worker's instance; called in the worker, so the pid is the worker's."""
    return {"pid": os.getpid(), "host": socket.gethostname()}


@raft.while_leader
def scheduler(stop: Leadership) -> None:
    """The job that must run once for the whole service, not once per gunicorn worker.

    It runs in one thread of the leading worker (in the app's context), and
    ``stop`` is set the moment that worker stops leading.
    """
    every = current_app.config["TICK_SECONDS"]
    while not stop.wait(every):
        log.warning("pid %d leads (term %d): running the scheduled jobs", os.getpid(), stop.term)


def create_app(config: dict[str, Any] | None = None) -> Flask:
    """The app factory; ``config`` overrides the defaults and the environment."""
    app = Flask(__name__)
    app.config.update(
        RAFTREDIS_KIND="flask-example",
        RAFTREDIS_META=worker_meta,
        RAFTREDIS_LEASE_TTL=3.0,
        TICK_SECONDS=10.0,
    )
    app.config.from_prefixed_env()
    app.config.update(config or {})
    raft.init_app(app)

    @app.get("/leader")
    def leader() -> ResponseReturnValue:
        candidate = raft.candidate
        return jsonify(
            pid=os.getpid(),
            id=candidate.id,
            is_leader=candidate.is_leader,
            term=candidate.current_term,
            leader_id=candidate.leader_id,
        )

    @app.get("/cluster")
    def cluster() -> ResponseReturnValue:
        candidate = raft.candidate
        members = candidate.get_instances()
        return jsonify(
            me=candidate.id,
            leader=next((m.id for m in members if m.is_leader), None),
            term=candidate.current_term,
            members=[{"id": m.id, "state": m.state.value, "meta": m.meta} for m in members],
        )

    @app.errorhandler(RaftRedisError)
    def unavailable(error: RaftRedisError) -> ResponseReturnValue:
        return jsonify(error=str(error), pid=os.getpid()), 503

    return app


app = create_app()
