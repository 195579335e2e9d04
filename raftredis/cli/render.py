"""Rich renderings of a kind: the members table of ``status`` and ``watch``."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from ..observe import Snapshot

__all__ = ["age", "compact_json", "events_text", "snapshot_table", "watch_view"]

_META_WIDTH = 60


def age(seconds: float | None) -> str:
    """A short human duration: ``0.4s``, ``12s``, ``3m05s``, ``2h10m``."""
    if seconds is None:
        return "?"
    seconds = max(0.0, seconds)
    if seconds < 10:
        return f"{seconds:.1f}s"
    if seconds < 60:
        return f"{seconds:.0f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def compact_json(value: Any, width: int = _META_WIDTH) -> str:
    """``value`` as one line of JSON, cut to ``width`` characters."""
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=repr)
    return text if len(text) <= width else text[: width - 1] + "…"


def snapshot_table(snapshot: Snapshot, caption: str | None = None) -> Table:
    """The members of a kind, leader first in bold, with the leader and term in the title."""
    now = snapshot.server_time
    if snapshot.leader is None:
        headline = "no leader"
    else:
        headline = f"leader {snapshot.leader.id} (term {snapshot.leader.term})"
    count = len(snapshot.members)
    if count == 0 and caption is None:
        caption = "no instance of this kind is running"
    title = f"kind {snapshot.kind}: {headline}, {count} member{'' if count == 1 else 's'}"
    table = Table(title=title, title_justify="left", caption=caption, caption_justify="left")
    # Narrow enough for 80 columns with 20-character ids and 13-digit terms;
    # META goes last and gives way. joined_at is in the JSON output.
    table.add_column("ID", no_wrap=True)
    table.add_column("STATE", no_wrap=True)
    table.add_column("TERM", justify="right", no_wrap=True)
    table.add_column("SEEN", justify="right", no_wrap=True)
    table.add_column("META", no_wrap=True, overflow="ellipsis", min_width=10)
    for member in snapshot.members:
        seen = None if member.last_seen is None else now - member.last_seen
        table.add_row(
            member.id,
            member.state,
            "" if member.term is None else str(member.term),
            f"{age(seen)} ago",
            compact_json(member.meta),
            style="bold green" if member.is_leader else None,
        )
    if snapshot.leader is not None and all(m.id != snapshot.leader.id for m in snapshot.members):
        # A lease whose holder is no longer a member (it crashed and was pruned).
        table.add_row(
            snapshot.leader.id,
            "leader",
            str(snapshot.leader.term),
            "",
            f"(not a member; lease ends in {age(snapshot.leader.expires_at - now)})",
            style="bold yellow",
        )
    return table


def events_text(lines: Sequence[str]) -> Text:
    """The recent events under the live table, oldest first."""
    text = Text()
    for line in lines:
        text.append(line + "\n", style="dim")
    return text


def watch_view(table: Table, lines: Sequence[str]) -> RenderableType:
    """The whole live view: the table, then the recent events."""
    return Group(table, events_text(lines)) if lines else table
