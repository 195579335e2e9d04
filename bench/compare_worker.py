"""One participant of one leader-election system, for bench/compare.py.

    python -m bench.compare_worker '{"system": "raftredis", "url": ..., "group": ..., "id": ...}'
    python -m bench.compare_worker '{"system": "tooz", "url": ..., "group": ..., "id": ...,
                                     "timeout": 3, "poll": 0.1}'

The worker builds its client object (a ``raftredis.Candidate``, or a tooz
coordinator from ``tooz.coordination.get_coordinator``), prints ``ready``
and then obeys JSON commands read from stdin, one per line:

- ``{"cmd": "start"}``: join and take part in the election; ``started``
  when the role is known;
- ``{"cmd": "stop"}``: leave (``stop()``), print ``stopped`` and exit;
- ``{"cmd": "reelect"}``: give leadership away without leaving
  (raftredis ``reelect()``; tooz: ``stand_down_group_leader``, or, where
  the driver does not implement it, ``unwatch_elected_as_leader`` and
  ``leave_group``), print ``reelected``.

Everything it prints is one JSON object per line with ``event``, ``id``,
``mono`` (``time.monotonic()``: CLOCK_MONOTONIC, one clock for every
process of a Linux host) and ``wall`` (``time.time()``), so the parent can
put the events of all workers on one time line:

- ``elected``: this participant was elected (raftredis: its ``elected``
  receiver ran; tooz: its ``watch_elected_as_leader`` callback ran);
- ``leading``: the participant's own answer to "do I lead?" changed
  (``value``). raftredis: ``is_leader``, polled every ``MONITOR_PERIOD``;
  tooz offers no such question: a participant leads from its callback on,
  until it stops or stands down (its Redis driver never tells it that it
  lost the lock);
- ``view``: raftredis only: the leader this participant knows of
  (``leader_id``) changed.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import os
import queue
import sys
import threading
import time
from typing import Any

#: How often a raftredis worker reads is_leader and leader_id.
MONITOR_PERIOD = 0.01

_out_lock = threading.Lock()
_ident = "?"


def emit(event: str, **fields: Any) -> None:
    """One JSON line on stdout, stamped with both clocks."""
    line = json.dumps(
        {"event": event, "id": _ident, "mono": time.monotonic(), "wall": time.time(), **fields}
    )
    with _out_lock:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def _commands() -> queue.SimpleQueue[dict[str, Any] | None]:
    """Commands from stdin on a thread of their own; None at EOF."""
    q: queue.SimpleQueue[dict[str, Any] | None] = queue.SimpleQueue()

    def read() -> None:
        for line in sys.stdin:
            line = line.strip()
            if line:
                q.put(json.loads(line))
        q.put(None)

    threading.Thread(target=read, daemon=True, name="commands").start()
    return q


def _exit(code: int = 0) -> None:
    sys.stdout.flush()
    os._exit(code)  # no atexit hooks: the worker has already stopped, or must vanish


# ----------------------------------------------------------------- raftredis


def run_raftredis(cfg: dict[str, Any]) -> None:
    from raftredis import Candidate

    kwargs: dict[str, Any] = {"redis": cfg["url"], "kind": cfg["group"], "id": cfg["id"]}
    if cfg.get("lease_ttl") is not None:
        kwargs["lease_ttl"] = float(cfg["lease_ttl"])
    if "fast_failover" in cfg:
        if "fast_failover" not in inspect.signature(Candidate).parameters:
            emit("error", text="this raftredis.Candidate has no fast_failover keyword")
            _exit(2)
        kwargs["fast_failover"] = bool(cfg["fast_failover"])
    candidate = Candidate(**kwargs)
    # For the record only: whether fast failover is in effect (a private attribute:
    # its default depends on the Redis topology).
    effective = getattr(candidate, "_fast", None)

    def on_elected(sender: Any, term: int, **extra: Any) -> None:
        emit("elected", term=term)

    candidate.on("elected", on_elected)
    t = candidate.timings
    emit(
        "ready",
        pid=os.getpid(),
        settings={k: v for k, v in kwargs.items() if k != "redis"},
        fast_failover_in_effect=effective,
        module=sys.modules["raftredis"].__file__,
        timings={k: getattr(t, k) for k in t.__dataclass_fields__},
        # The leader renews its lease this often: a crash lands anywhere in this cycle.
        cycle=t.renew_interval,
        lease=t.lease_ttl,
    )
    stopping = threading.Event()

    def monitor() -> None:
        leading, view = False, None
        while not stopping.is_set():
            now_leading = candidate.is_leader
            now_view = candidate.leader_id
            if now_leading != leading and not stopping.is_set():
                leading = now_leading
                emit("leading", value=leading)
            if now_view != view and not stopping.is_set():
                view = now_view
                emit("view", leader=view)
            time.sleep(MONITOR_PERIOD)

    commands = _commands()
    while True:
        cmd = commands.get()
        if cmd is None:
            cmd = {"cmd": "stop"}
        op = cmd["cmd"]
        if op == "start":
            begin = time.monotonic()
            candidate.start()
            end = time.monotonic()
            leader = candidate.is_leader
            emit(
                "started",
                begin=begin,
                end=end,
                role="leader" if leader else "follower",
                leader=candidate.leader_id,
            )
            threading.Thread(target=monitor, daemon=True, name="monitor").start()
        elif op == "reelect":
            begin = time.monotonic()
            resigned = candidate.reelect()
            end = time.monotonic()
            emit("reelected", begin=begin, end=end, method="reelect()", resigned=resigned)
        elif op == "stop":
            role = "leader" if candidate.is_leader else "follower"
            begin = time.monotonic()
            candidate.stop()
            end = time.monotonic()
            stopping.set()
            emit("stopped", begin=begin, end=end, role=role)
            _exit()


# ---------------------------------------------------------------------- tooz


def run_tooz(cfg: dict[str, Any]) -> None:
    import tooz
    from tooz import coordination

    url = cfg["url"]
    if cfg.get("timeout") is not None:
        url += ("&" if "?" in url else "?") + f"timeout={int(cfg['timeout'])}"
    poll = float(cfg.get("poll", 0.1))
    group = cfg["group"].encode()
    coord = coordination.get_coordinator(url, cfg["id"].encode())
    # What the driver made of its options (its defaults where none was given).
    timeout = int(getattr(coord, "timeout", 30))
    membership = float(getattr(coord, "membership_timeout", timeout))
    lock_timeout = int(getattr(coord, "lock_timeout", timeout))
    emit(
        "ready",
        pid=os.getpid(),
        settings={
            "url": url,
            "timeout": timeout,
            "membership_timeout": membership,
            "lock_timeout": lock_timeout,
            "poll": poll,
            "start_heart": True,
        },
        # The heart re-acquires the leader lock every min(lock, membership timeout) / 2.
        cycle=min(lock_timeout, membership) / 2.0,
        lease=float(lock_timeout),
    )
    leading = False
    watching = False

    def on_elected(event: Any) -> None:
        nonlocal leading
        emit("elected", member=event.member_id.decode())
        if not leading:
            leading = True
            emit("leading", value=True)

    def stand_down() -> str:
        nonlocal leading, watching
        try:
            coord.stand_down_group_leader(group)
            method = "stand_down_group_leader()"
        except tooz.NotImplemented:
            # The Redis driver does not implement it. The documented way to stop
            # running for election is to unregister the callbacks; we also leave.
            coord.unwatch_elected_as_leader(group, on_elected)
            watching = False
            coord.leave_group(group).get()
            method = (
                "unwatch_elected_as_leader() + leave_group() "
                "(stand_down_group_leader: NotImplemented)"
            )
        if leading:
            leading = False
            emit("leading", value=False)
        return method

    commands = _commands()
    started = False
    while True:
        try:
            cmd = commands.get(timeout=poll) if started else commands.get()
        except queue.Empty:
            cmd = {}
        if cmd is None:
            cmd = {"cmd": "stop"}
        op = cmd.get("cmd")
        if op == "start":
            begin = time.monotonic()
            coord.start(start_heart=True)
            # tooz's tutorial: create the group (if it is not there yet), join it,
            # then register for the election. join_group_create() would do the
            # first two, but it sleeps 1 s (tenacity) after creating the group.
            with contextlib.suppress(coordination.GroupAlreadyExist):
                coord.create_group(group).get()
            coord.join_group(group).get()
            coord.watch_elected_as_leader(group, on_elected)
            watching = True
            coord.run_watchers()  # the first attempt at the leader lock
            end = time.monotonic()
            started = True
            emit(
                "started",
                begin=begin,
                end=end,
                role="leader" if leading else "follower",
                leader=cfg["id"] if leading else None,  # the Redis driver has no get_leader
            )
            continue
        if op == "reelect":
            begin = time.monotonic()
            method = stand_down()
            end = time.monotonic()
            emit("reelected", begin=begin, end=end, method=method, resigned=True)
        elif op == "stop":
            role = "leader" if leading else "follower"
            if leading:
                leading = False
                emit("leading", value=False)
            begin = time.monotonic()
            coord.stop()
            end = time.monotonic()
            emit("stopped", begin=begin, end=end, role=role)
            _exit()
        if started and watching:
            try:
                coord.run_watchers()
            except tooz.ToozError as exc:
                emit("warning", text=f"run_watchers: {exc!r}")


def main() -> None:
    global _ident
    cfg = json.loads(sys.argv[1])
    _ident = cfg["id"]
    try:
        if cfg["system"] == "raftredis":
            run_raftredis(cfg)
        elif cfg["system"] == "tooz":
            run_tooz(cfg)
        else:
            emit("error", text=f"unknown system {cfg['system']!r}")
            _exit(2)
    except Exception as exc:  # report, then die: the parent shows stderr
        emit("error", text=repr(exc))
        raise


if __name__ == "__main__":
    main()
