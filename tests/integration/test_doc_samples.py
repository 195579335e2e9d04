"""The documentation cannot rot: its samples run, and its tables say what the code does.

* Every ```python (or ```py) block of ``README.md`` and ``docs/*.md`` runs.
  The blocks of one page run in order, in one namespace, in a subprocess of
  their own (so a page that hangs is killed, and one page cannot break the
  next), against the session's real redis-server, whose URL the samples read
  from ``REDIS_URL``. One test per page, named after it; a page without Python
  blocks has no test. Tracebacks point at the page and its line. A page whose
  samples leave a Candidate running fails: samples stop what they start.
  Code that cannot run belongs in a ```text or ```console block.
* The state diagram that ``docs/_ext/state_diagram.py`` generates from the
  real election state machine shows the transitions the design promises.
* The tables of ``signals.md``, ``configuration.md`` and ``porting.md`` are
  checked against ``raftredis.signals``, ``Candidate``'s signature,
  ``Timings.from_lease`` and the node-raft-redis README.
"""

from __future__ import annotations

import ast
import importlib.util
import inspect
import json
import math
import os
import re
import signal
import subprocess
import sys
import threading
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass, fields
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from blinker import NamedSignal

from raftredis import Candidate, State, Timings, signals
from raftredis.testing import SignalRecorder

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
#: Fenced blocks in these languages are run; every other language is shown only.
PYTHON = frozenset({"python", "py", "python3", "py3"})
#: How long the samples of one page may take, all together (seconds).
PAGE_TIMEOUT = 90.0


# ------------------------------------------------------------ extracting blocks


@dataclass(frozen=True)
class Block:
    """One fenced code block of a Markdown page."""

    page: Path
    line: int  #: the page's line number of the block's first code line (1-based)
    language: str
    code: str
    #: The MyST directive (``{note}``, ``{tab-item}``...) the block is nested in, if any.
    directive: str = ""


_OPEN = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})(?P<info>.*)$")
_OPTION = re.compile(r"^:[\w-]+:(\s.*)?$")
#: MyST directives that show code: ```{code-block} python is a Python block.
_CODE_DIRECTIVES = ("{code-block}", "{code}", "{sourcecode}", "{code-cell}")
#: Directives whose body is not Markdown; the body of any other directive
#: (``{note}``, ``{admonition}``, ``{tab-item}``...) is searched for blocks too.
_NOT_MARKDOWN = (
    *_CODE_DIRECTIVES,
    "{eval-rst}", "{include}", "{literalinclude}", "{toctree}", "{math}", "{raw}",
    "{csv-table}", "{mermaid}", "{graphviz}",
)  # fmt: skip


def _language(info: str) -> str:
    """The language of a fence's info string: ``python`` for ```python and for a
    MyST ```{code-block} python directive; the directive (``{note}``) otherwise."""
    words = info.strip().split()
    if not words:
        return ""
    if len(words) > 1 and words[0] in _CODE_DIRECTIVES:
        return words[1].lower()
    return words[0].lower()


def _directive_options(body: list[str]) -> int:
    """How many lines of a directive's body are its options (``:key: value`` lines,
    or a ``---`` YAML block), which MyST does not count as content."""
    if body and body[0].strip() == "---":
        for k in range(1, len(body)):
            if body[k].strip() == "---":
                return k + 1
        return 0
    k = 0
    while k < len(body) and _OPTION.match(body[k]):
        k += 1
    return k


def _blocks(page: Path, lines: list[str], offset: int, directive: str) -> list[Block]:
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        opened = _OPEN.match(lines[i])
        if opened is None or (opened["fence"][0] == "`" and "`" in opened["info"]):
            i += 1
            continue
        fence, indent = opened["fence"], len(opened["indent"])
        closing = re.compile(rf"^[ \t]*{re.escape(fence[0])}{{{len(fence)},}}[ \t]*$")
        body: list[str] = []
        j = i + 1
        while j < len(lines) and not closing.match(lines[j]):
            line = lines[j]
            strip = len(line) - len(line.lstrip(" "))
            body.append(line[min(indent, strip) :])
            j += 1
        info = opened["info"].strip()
        name = info.split()[0] if info else ""
        skip = _directive_options(body) if name.startswith("{") else 0
        content = body[skip:]
        first = offset + i + 2 + skip
        blocks.append(Block(page, first, _language(info), "\n".join(content) + "\n", directive))
        if name.startswith("{") and name not in _NOT_MARKDOWN and ":" not in name:
            blocks += _blocks(page, content, first - 1, name)
        i = j + 1
    return blocks


def fenced_blocks(page: Path) -> list[Block]:
    """Every fenced code block of ``page``, with those nested in MyST directives.

    Blocks shown inside a longer plain fence are not blocks. A fence may be
    indented (in a list item): its opening indentation is removed from its
    lines. A fence that is never closed runs to the end of the page, as in
    CommonMark. A directive's options are not part of its content.
    """
    return _blocks(page, page.read_text(encoding="utf-8").splitlines(), 0, "")


def python_blocks(page: Path) -> list[Block]:
    """The blocks of ``page`` that are run."""
    return [b for b in fenced_blocks(page) if b.language in PYTHON]


def doc_pages() -> list[Path]:
    """``README.md`` and every page of ``docs/``, including pages added later."""
    return [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]


def pages_with_python() -> list[Path]:
    return [page for page in doc_pages() if python_blocks(page)]


# ----------------------------------------------------------- running the pages

#: Runs in the subprocess: the page's blocks (JSON on stdin), in order, in one
#: namespace. Each block is compiled with the page as its file name and padded
#: to its line, so a traceback shows the page and the line.
RUNNER = r"""
import json, sys, traceback

blocks = json.load(sys.stdin)
namespace = {"__name__": "__main__"}
status = 0
for block in blocks:
    source = "\n" * (block["line"] - 1) + block["code"]
    try:
        exec(compile(source, block["page"], "exec"), namespace)
    except BaseException:
        traceback.print_exc()
        print(f"\nFAILED: the block at {block['page']}:{block['line']}", file=sys.stderr)
        status = 1
        break

registry = sys.modules.get("raftredis.registry")
running = registry.running() if registry else []
for candidate in running:
    candidate.stop(timeout=5)
if running and status == 0:
    print(
        f"\nFAILED: the samples left {len(running)} Candidate(s) running: {running}. "
        "Stop them in the sample (candidate.stop(), or `with candidate:`).",
        file=sys.stderr,
    )
    status = 3
sys.stdout.flush()
sys.exit(status)
"""


def run_page(page: Path, redis_url: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run the Python blocks of ``page`` in a fresh interpreter; kill it after PAGE_TIMEOUT."""
    blocks = [{"page": str(b.page), "line": b.line, "code": b.code} for b in python_blocks(page)]
    env = {**os.environ, "REDIS_URL": redis_url, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [sys.executable, "-c", RUNNER],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=cwd,
        env=env,
        start_new_session=True,  # a timeout kills whatever the samples started, too
    )
    try:
        out, err = process.communicate(json.dumps(blocks), timeout=PAGE_TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        out, err = process.communicate()
        err += f"\nTIMEOUT: the samples of {page.name} ran longer than {PAGE_TIMEOUT:g} s"
        return subprocess.CompletedProcess(process.args, -signal.SIGKILL, out, err)
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


@pytest.mark.integration
@pytest.mark.timeout(PAGE_TIMEOUT + 30)
@pytest.mark.parametrize("page", pages_with_python(), ids=lambda p: p.name)
def test_samples_of_the_page_run(page: Path, redis_url: str, tmp_path: Path) -> None:
    """Every Python block of the page runs, in order, and stops what it started."""
    result = run_page(page, redis_url, tmp_path)
    assert result.returncode == 0, (
        f"the samples of {page.relative_to(ROOT)} failed (exit {result.returncode})\n"
        f"--- stderr (end) ---\n{result.stderr[-6000:]}\n"
        f"--- stdout (end) ---\n{result.stdout[-2000:]}"
    )


# ----------------------------------------------------------- the extractor itself


def test_extractor_finds_indented_nested_and_directive_blocks(tmp_path: Path) -> None:
    """Blocks in list items, ~~~ fences, MyST code-block directives (without their
    options), blocks inside other directives; not blocks shown inside a longer plain
    fence; not other languages."""
    page = tmp_path / "page.md"
    page.write_text(
        "# Title\n"
        "\n"
        "```python\n"
        "a = 1\n"
        "```\n"
        "\n"
        "- an item:\n"
        "\n"
        "  ```py\n"
        "  if a:\n"
        "      b = 2\n"
        "  ```\n"
        "\n"
        "````markdown\n"
        "```python\n"
        "not_run()\n"
        "```\n"
        "````\n"
        "\n"
        "~~~python3\n"
        "c = 3\n"
        "~~~\n"
        "\n"
        "```{code-block} python\n"
        ":caption: x\n"
        "d = 4\n"
        "```\n"
        "\n"
        "```text\n"
        "not python\n"
        "```\n"
        "\n"
        "````{note}\n"
        ":class: x\n"
        "In a note:\n"
        "```python\n"
        "e = 5\n"
        "```\n"
        "````\n",
        encoding="utf-8",
    )
    blocks = python_blocks(page)
    assert [(b.line, b.language, b.directive) for b in blocks] == [
        (4, "python", ""),
        (10, "py", ""),
        (21, "python3", ""),
        (26, "python", ""),
        (37, "python", "{note}"),
    ]
    assert [b.code for b in blocks] == ["a = 1\n", "if a:\n    b = 2\n", "c = 3\n",
                                        "d = 4\n", "e = 5\n"]  # fmt: skip
    assert [b.language for b in fenced_blocks(page)] == [
        "python",
        "py",
        "markdown",
        "python3",
        "python",
        "text",
        "{note}",
        "python",
    ]


@pytest.mark.parametrize("page", doc_pages(), ids=lambda p: p.name)
def test_extractor_agrees_with_a_markdown_parser(page: Path) -> None:
    """The extractor finds the same Python blocks as markdown-it (the parser MyST uses),
    so no sample is skipped silently. Needs the ``docs`` extra."""
    markdown_it = pytest.importorskip("markdown_it")
    tokens = markdown_it.MarkdownIt("commonmark").parse(page.read_text(encoding="utf-8"))
    expected = []
    for token in tokens:
        if token.type == "fence" and token.map is not None and _language(token.info) in PYTHON:
            body = token.content.splitlines()
            skip = _directive_options(body) if token.info.startswith("{") else 0
            expected.append((token.map[0] + 2 + skip, "".join(f"{x}\n" for x in body[skip:])))
    found = [(b.line, b.code) for b in python_blocks(page) if not b.directive]
    assert found == expected


def test_python_blocks_compile() -> None:
    """Every Python block is valid Python on its own (fast feedback before running pages)."""
    failures = []
    for page in doc_pages():
        for block in python_blocks(page):
            try:
                compile(block.code, f"{page.name}:{block.line}", "exec")
            except SyntaxError as exc:
                failures.append(f"{page.name}:{block.line}: {exc}")
    assert not failures, "Python blocks that do not compile (use ```text):\n" + "\n".join(failures)


# -------------------------------------------------------------- the state diagram


def _load_ext(name: str) -> ModuleType:
    """Import a module of ``docs/_ext`` without putting that folder on sys.path for good."""
    path = DOCS / "_ext" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"_docs_ext_{name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while building
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def state_diagram() -> ModuleType:
    return _load_ext("state_diagram")


@pytest.fixture(scope="module")
def exploration(state_diagram: ModuleType) -> Any:
    return state_diagram.explore()


F, C, L = State.FOLLOWER, State.CANDIDATE, State.LEADER


@pytest.mark.parametrize(
    ("old", "new", "event", "detail"),
    [
        (F, C, "Start", "start()"),
        (F, C, "Tick", "`resigned` notice"),  # a vacancy, announced
        (F, C, "Tick", "`left` notice of the leader"),  # a vacancy: the leader left
        (F, C, "Tick", "heartbeat read no lease"),  # a vacancy, read in Redis
        (F, C, "Tick", "acquire found the lease held"),  # the lease it saw ran out
        (F, C, "Tick", "reelect()"),  # its own reelect(), after the backoff
        (C, L, "AcquireResult", "took the lease"),
        (C, F, "AcquireResult", "held by another instance"),
        (C, F, "BackendFailed", "Redis failed"),
        (L, F, "RenewResult", "lease gone"),  # a lost renew
        (L, F, "RenewResult", "held by another instance"),
        (L, F, "Tick", "renew deadline passed"),  # renews kept failing
        (L, F, "HeartbeatResult", "another instance"),
        (L, F, "StopRequested", "stop()"),
        (L, F, "ReelectRequested", "reelect()"),
    ],
)
def test_state_diagram_shows_transition(
    exploration: Any, old: State, new: State, event: str, detail: str
) -> None:
    """The transitions the design promises are observed in the real state machine."""
    assert exploration.has(old, new, event, detail), sorted(exploration.transitions)


def test_state_diagram_has_no_shortcuts(exploration: Any) -> None:
    """Leadership is only ever taken through a campaign, and lost only to follower."""
    pairs = {(t.old, t.new) for t in exploration.transitions}
    assert pairs == {("follower", "candidate"), ("candidate", "leader"),
                     ("candidate", "follower"), ("leader", "follower")}  # fmt: skip


def test_state_diagram_renders(state_diagram: ModuleType, exploration: Any, tmp_path: Path) -> None:
    """The Markdown has a row per transition; the SVG is well-formed and names every state;
    generate() writes both, and rewrites nothing when nothing changed."""
    markdown = state_diagram.render_markdown(exploration)
    row = re.compile(r"\| (follower|candidate|leader) \| (follower|candidate|leader) \|")
    rows = [line for line in markdown.splitlines() if row.match(line)]
    assert len(rows) == len(exploration.transitions)
    svg = ET.fromstring(state_diagram.render_svg(exploration))
    texts = {"".join(t.itertext()) for t in svg.iter("{http://www.w3.org/2000/svg}text")}
    assert {"FOLLOWER", "CANDIDATE", "LEADER", "AcquireResult", "StopRequested"} <= texts
    assert {p.name for p in state_diagram.generate(tmp_path)} == {"states.md", "states.svg"}
    assert state_diagram.generate(tmp_path) == []


# -------------------------------------------------------------------- signals.md


def _table(page: Path, first_header: str) -> list[list[str]]:
    """The rows (cells stripped) of the Markdown table whose first header is ``first_header``."""
    lines = page.read_text(encoding="utf-8").splitlines()
    for i, line in enumerate(lines):
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells[0] == first_header:
            rows = []
            for row in lines[i + 2 :]:
                if not row.startswith("|"):
                    break
                rows.append([c.strip() for c in row.strip().strip("|").split("|")])
            return rows
    raise AssertionError(f"{page.name} has no table whose first column is {first_header!r}")


def _code(cell: str) -> list[str]:
    """The `code` spans of a table cell."""
    return re.findall(r"`([^`]+)`", cell)


def _all_signals() -> dict[str, NamedSignal]:
    return {
        name: getattr(signals, name)
        for name in signals.__all__
        if isinstance(getattr(signals, name), NamedSignal)
    }


def _signal_rows() -> dict[str, list[str]]:
    return {_code(row[0])[0]: row for row in _table(DOCS / "signals.md", "signal")}


def test_signals_page_lists_every_signal_and_its_seed_name() -> None:
    """One row per signal of raftredis.signals, with its node-raft-redis name, if any."""
    rows = _signal_rows()
    assert set(rows) == set(_all_signals())
    seed_names = {signal.name: seed for seed, signal in signals.SEED_EVENTS.items()}
    for name, row in rows.items():
        documented = [s.strip('"') for s in _code(row[1])]
        assert documented == ([seed_names[name]] if name in seed_names else []), name


THREADS = {"dispatch": "raftredis-dispatch-", "message listener": "raftredis-messages-"}


@pytest.mark.integration
def test_signals_page_states_the_arguments_and_threads_seen(redis_url: str) -> None:
    """Produce every signal for real and compare its keyword arguments and thread with
    the table of signals.md."""
    recorder = SignalRecorder()
    names = list(_all_signals())
    leader = Candidate(redis=redis_url, kind="signals-doc", lease_ttl=1.0)
    follower = Candidate(redis=redis_url, kind="signals-doc", lease_ttl=1.0)
    boom = threading.Event()

    def raise_once(sender: Any, **extra: Any) -> None:
        if not boom.is_set():
            boom.set()
            raise RuntimeError("a receiver that raises")

    recorder.connect(leader, *names)
    recorder.connect(follower, *names)
    follower.on("message_from_leader", raise_once)  # error_occurred on the message thread
    leader.on("meta_changed", lambda sender, **extra: 1 / 0)  # ... and on the dispatch thread
    try:
        leader.start()
        follower.start()
        recorder.wait_for("instance_joined")
        follower.set_meta({"v": 2})
        leader.message_all("from the leader")
        follower.message_all("from a follower")
        recorder.wait_for("message_from_follower")
        recorder.wait_for("error_occurred", count=2)
        follower.stop()
        recorder.wait_for("instance_left")
    finally:
        follower.stop()
        leader.stop()
    rows = _signal_rows()
    for name in names:
        seen = recorder.of(name)
        assert seen, f"{name} was never sent"
        documented_args = set(_code(rows[name][2]))
        threads = {THREADS[t.strip()] for t in rows[name][3].split(", or ")}
        for event in seen:
            assert set(event.kwargs) == documented_args, (name, event.kwargs)
            assert any(event.thread.startswith(t) for t in threads), (name, event.thread)
    error_threads = {e.thread for e in recorder.of("error_occurred")}
    for prefix in THREADS.values():  # both threads report errors, as the table says
        assert any(t.startswith(prefix) for t in error_threads), (prefix, error_threads)


# -------------------------------------------------------------- configuration.md


def _default(cell: str) -> Any:
    return ast.literal_eval(_code(cell)[0])


def _seconds(cell: str) -> float:
    """``"0.75 s"`` or ``"50 ms"``, in seconds."""
    match = re.fullmatch(r"([\d.]+) (ms|s)", cell.strip())
    assert match is not None, f"not a duration: {cell!r}"
    return float(match[1]) / (1000 if match[2] == "ms" else 1)


def test_configuration_page_lists_every_candidate_argument_and_its_default() -> None:
    rows = {_code(row[0])[0]: row for row in _table(DOCS / "configuration.md", "argument")}
    parameters = inspect.signature(Candidate).parameters
    assert list(rows) == list(parameters)
    for name, parameter in parameters.items():
        if parameter.default is inspect.Parameter.empty:
            assert rows[name][1] == "required", name
        else:
            assert _default(rows[name][1]) == parameter.default, name


@pytest.mark.parametrize("ttl", [0.1, 0.5, 1.0, 3.0, 10.0, 60.0])
def test_configuration_page_derives_every_timing_like_the_code(ttl: float) -> None:
    """Each "derived as" expression, evaluated, gives what Timings.from_lease gives;
    the "default" column is from_lease(3.0)."""
    rows = {_code(row[0])[0]: row for row in _table(DOCS / "configuration.md", "timing")}
    assert list(rows) == [f.name for f in fields(Timings)]
    derived = Timings.from_lease(ttl)
    default = Timings.from_lease(3.0)
    for name, row in rows.items():
        expression = _code(row[1])[0]
        scope = {"ttl": ttl, "renew_interval": derived.renew_interval, "min": min, "max": max}
        value = eval(expression, {"__builtins__": {}}, scope)
        assert math.isclose(value, getattr(derived, name)), (name, expression, ttl)
        assert math.isclose(_seconds(row[2]), getattr(default, name)), (name, row[2])


# -------------------------------------------------------------------- porting.md

#: Every name the node-raft-redis README uses: options, methods, properties,
#: events, and the shapes its callbacks and getInstances() return.
SEED_NAMES = [
    "new Candidate", "redis", "host", "port", "url", "kind", "meta",
    "start", "stop", "reelect", "messageFollowers", "messageLeader", "messageTo",
    "messageAll", "getInstances", "getLeader", "getMeta", "setMeta", "on",
    "id", "state", "currentTerm",
    "elected", "defeated", "statechange", "message", "message:from:leader",
    "message:from:follower", "error", "{message, from}", "{id, meta, state}",
]  # fmt: skip

SEED_README_CANDIDATES = [
    Path(os.environ.get("RAFTREDIS_SEED_README", "/nonexistent")),
    ROOT.parent / "shared" / "seed" / "node-raft-redis.md",
    Path("/work/shared/seed/node-raft-redis.md"),
]


def _porting_rows() -> dict[str, list[str]]:
    rows = {}
    for row in _table(DOCS / "porting.md", "node-raft-redis"):
        name = re.sub(r"\(.*\)$", "", _code(row[0])[0]) if _code(row[0]) else row[0]
        rows[name] = row
    return rows


def test_porting_page_names_every_seed_name() -> None:
    rows = _porting_rows()
    missing = [name for name in SEED_NAMES if name not in rows]
    assert not missing, f"porting.md has no row for {missing}"


def test_porting_page_names_exist_in_python() -> None:
    """The camelCase aliases and the Python names in the table exist on Candidate."""
    for name, row in _porting_rows().items():
        if re.fullmatch(r"[a-z]+[A-Z]\w*", name):
            assert callable(getattr(Candidate, name, None)) or isinstance(
                getattr(Candidate, name, None), property
            ), name
        for code in _code(row[1]):
            attribute = re.fullmatch(r"([a-z_]+)\(.*\)", code)
            if attribute:
                assert hasattr(Candidate, attribute[1]), code


def test_seed_names_cover_the_seed_readme() -> None:
    """Every method, property and event the node-raft-redis README lists is in SEED_NAMES."""
    readme = next((p for p in SEED_README_CANDIDATES if p.is_file()), None)
    if readme is None:
        pytest.skip("the node-raft-redis README (shared/seed/node-raft-redis.md) is not here")
    text = readme.read_text(encoding="utf-8")
    listed = set()
    for section in ("Methods (all async):", "Properties:", "Events:"):
        body = text.split(section, 1)[1]
        for line in body.splitlines()[1:]:
            item = re.match(r"- ([\w:]+):", line)
            if item is None:
                if line.startswith("- "):
                    continue  # a sub-item (the transitions of an event)
                break
            listed.add(item[1])
    listed |= set(re.findall(r"candidate\.(\w+)\(", text))
    assert listed, "could not read the seed README's lists"
    assert listed <= set(SEED_NAMES), sorted(listed - set(SEED_NAMES))


# -------------------------------------------------------------- the generated tables


def test_generated_timings_and_signals_pages(tmp_path: Path) -> None:
    """The docs extension writes every generated file, and the timings table has a row
    per Timings field. Needs the ``docs`` extra (Sphinx)."""
    pytest.importorskip("sphinx")
    sys.path.insert(0, str(DOCS / "_ext"))  # the extension imports state_diagram
    module = _load_ext("raftredis_docs")
    changed = {p.name for p in module.write_generated(tmp_path)}
    assert changed == {"states.md", "states.svg", "timings.md", "signals.md"}
    timings = (tmp_path / "timings.md").read_text(encoding="utf-8")
    for f in fields(Timings):
        assert f"| `{f.name}` |" in timings
    listed = (tmp_path / "signals.md").read_text(encoding="utf-8")
    for name in _all_signals():
        assert f".. autodata:: raftredis.signals.{name}\n" in listed


@pytest.fixture(autouse=True)
def _no_sys_path_leak() -> Iterator[None]:
    """The docs extension must not be importable by accident after these tests."""
    before = list(sys.path)
    yield
    sys.path[:] = before
