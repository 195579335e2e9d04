"""Signed envelopes and notices: HMAC-SHA256 with a shared secret, a timestamp, a replay guard.

Only used when a Candidate has a ``secret``. A signed message is the JSON
it would be without a secret, with two fields spliced in before its closing
brace::

    {...unsigned JSON without its final "}"...,"st":<server ms>,"sig":"<43 chars>"}
    \\__________________ signed part ______________________/

The MAC is over the exact bytes of the signed part (everything before
``,"sig":"``), so the verifier never re-serialises anything. ``st`` is the
sender's estimate of the Redis server's clock (ms), so hosts' clock skew does
not matter. ``sig`` is the unpadded URL-safe base64 of the 32-byte MAC, always
43 characters: the signature has a fixed length and a fixed place, and the
whole message stays one JSON object that decoders read as before (they ignore
fields they do not know).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

from .errors import ConfigurationError
from .wire import WireError

__all__ = ["DEFAULT_WINDOW", "Keyring", "ReplayGuard", "Signer", "secrets_from"]

#: Messages older (or further in the future) than this many seconds are dropped.
DEFAULT_WINDOW = 30.0
#: MACs remembered per listener to drop replays inside the window (memory bound).
SEEN_LIMIT = 100_000

_SIG_OPEN = b',"sig":"'
_SIG_LEN = 43  # base64url of 32 bytes, unpadded
_SUFFIX_LEN = len(_SIG_OPEN) + _SIG_LEN + 2  # plus '"}'
_STAMP = re.compile(rb',"st":(\d{1,16})\Z')


def secrets_from(secret: Any) -> list[bytes]:
    """The secrets of ``Candidate(secret=...)`` as bytes, the signing one first.

    Accepts a str or bytes, or a non-empty list/tuple of them (key rotation).
    """
    items = list(secret) if isinstance(secret, (list, tuple)) else [secret]
    if not items:
        raise ConfigurationError("secret must not be an empty list", option="secret")
    keys: list[bytes] = []
    for item in items:
        if isinstance(item, str):
            item = item.encode("utf-8")
        if not isinstance(item, bytes):
            raise ConfigurationError(
                f"secret must be a str or bytes (or a list of them), got {type(item).__name__}",
                option="secret",
            )
        if len(item) < 16:
            raise ConfigurationError(
                "a secret must be at least 16 bytes long; use e.g. secrets.token_urlsafe(32)",
                option="secret",
            )
        keys.append(item)
    return keys


class Keyring:
    """Signs with the first secret; verifies against any of them."""

    def __init__(self, keys: Sequence[bytes]) -> None:
        if not keys:
            raise ValueError("a Keyring needs at least one key")
        # Keyed HMAC states, copied per message: cheaper than hmac.new() each time.
        self._macs = [hmac.new(key, digestmod=hashlib.sha256) for key in keys]

    def sign(self, body: bytes, server_ms: int) -> bytes:
        """``body`` (a JSON object) with ``st`` and ``sig`` spliced in before its ``}``."""
        if not body.endswith(b"}"):
            raise ValueError("only a JSON object can be signed")
        signed = b'%s,"st":%d' % (body[:-1], server_ms)
        mac = self._macs[0].copy()
        mac.update(signed)
        return b'%s%s%s"}' % (signed, _SIG_OPEN, _encode(mac.digest()))

    def verify(self, raw: bytes) -> tuple[int, bytes]:
        """(``st`` in server ms, MAC) of a correctly signed message, else :class:`WireError`."""
        if len(raw) <= _SUFFIX_LEN or not raw.endswith(b'"}'):
            raise WireError("message is not signed")
        split = len(raw) - _SUFFIX_LEN
        if raw[split : split + len(_SIG_OPEN)] != _SIG_OPEN:
            raise WireError("message is not signed")
        # Compared in its encoded form: decoding would accept several spellings
        # of one MAC (base64 decoders ignore the spare bits of the last character).
        given = raw[split + len(_SIG_OPEN) : -2]
        signed = raw[:split]
        for keyed in self._macs:
            mac = keyed.copy()
            mac.update(signed)
            if hmac.compare_digest(_encode(mac.digest()), given):
                break
        else:
            raise WireError("message has a bad signature (wrong secret, or altered)")
        stamp = _STAMP.search(signed)
        if stamp is None:
            raise WireError("signed message has no valid 'st' timestamp")
        return int(stamp.group(1)), given


def _encode(mac: bytes) -> bytes:
    """A 32-byte MAC as 43 characters of unpadded URL-safe base64."""
    return base64.urlsafe_b64encode(mac)[:-1]


class ReplayGuard:
    """Verifies signed messages for one receiver: signature, age, and first sight.

    Drops messages stamped more than ``window`` seconds from ``now_ms()`` (the
    Redis server's clock, estimated) either way, and any MAC already seen
    within the window. At most :data:`SEEN_LIMIT` MACs are kept; past that the
    oldest are forgotten early (a replay of one of those inside the window
    would pass: the price of bounded memory under a flood).
    """

    def __init__(
        self,
        keyring: Keyring,
        now_ms: Callable[[], int],
        window: float = DEFAULT_WINDOW,
        limit: int = SEEN_LIMIT,
    ) -> None:
        self._keyring = keyring
        self._now_ms = now_ms
        self._window_ms = int(window * 1000)
        self._limit = limit
        self._seen: OrderedDict[bytes, int] = OrderedDict()  # MAC -> when seen (server ms)
        # The control listener can be replaced while the old one still runs.
        self._lock = threading.Lock()

    def check(self, raw: bytes) -> None:
        """Return if ``raw`` is signed, fresh and new; else raise :class:`WireError`."""
        stamp, mac = self._keyring.verify(raw)
        now = self._now_ms()
        age = now - stamp
        if age > self._window_ms:
            raise WireError(f"signed message is {age / 1000:.1f} s old: dropped as a replay")
        if -age > self._window_ms:
            raise WireError(f"signed message is stamped {-age / 1000:.1f} s in the future")
        with self._lock:
            if mac in self._seen:
                raise WireError("signed message was already received: dropped as a replay")
            self._seen[mac] = now
            self._forget(now)

    def _forget(self, now: int) -> None:
        seen = self._seen
        while seen and (
            len(seen) > self._limit or next(iter(seen.values())) < now - 2 * self._window_ms
        ):
            seen.popitem(last=False)


class Signer:
    """Signs what one instance sends, and checks what it receives, by one clock.

    ``now_ms`` is the Redis server's clock as this instance estimates it, so
    that instances with skewed local clocks agree on a signature's age.
    """

    def __init__(self, keyring: Keyring, now_ms: Callable[[], int], window: float) -> None:
        self._keyring = keyring
        self._now_ms = now_ms
        self._window = window

    def sign(self, body: bytes) -> bytes:
        """``body`` with its signature (an envelope or a control notice)."""
        return self._keyring.sign(body, self._now_ms())

    def guard(self) -> ReplayGuard:
        """A verifier for one listener (each remembers what it has seen)."""
        return ReplayGuard(self._keyring, self._now_ms, self._window)
