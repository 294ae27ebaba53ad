"""The pseudonymisation key: read from a file or an environment variable's value, never from code.

A key is text, hex or base64 (optionally prefixed ``hex:`` or ``base64:``), decoding to at least 32 bytes.
Unprefixed text made only of hex digits (even length) is read as hex, anything else as base64.
:class:`PseudonymKey` never shows the key: not in ``repr``/``str``, not in pickles, not in error messages.
Its ``key_id`` (first 8 hex digits of SHA-256 of the key bytes, or an id the operator sets) names the key in
outputs so a rotation can be traced; it does not help anyone guess the key.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from pathlib import Path
from typing import NoReturn

MIN_KEY_BYTES = 32
ENV_VAR = "CLD_PSEUDO_KEY"
_HEX = re.compile(r"[0-9a-fA-F]+")
_KEY_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")


class PseudonymKeyError(ValueError):
    """The key cannot be used. Messages never contain key material."""


class PseudonymKey:
    """Secret key bytes plus a public key id. The bytes are only reachable through ``secret_bytes()``."""

    __slots__ = ("__secret", "key_id")

    def __init__(self, secret: bytes, *, key_id: str | None = None) -> None:
        if len(secret) < MIN_KEY_BYTES:
            raise PseudonymKeyError(f"the key is too short: at least {MIN_KEY_BYTES} bytes are required")
        if key_id is not None and not _KEY_ID.fullmatch(key_id):
            raise PseudonymKeyError("a key id is 1 to 64 letters, digits, '.', '_' or '-'")
        self.__secret = bytes(secret)
        self.key_id: str = key_id or hashlib.sha256(self.__secret).hexdigest()[:8]

    def secret_bytes(self) -> bytes:
        return self.__secret

    def __repr__(self) -> str:
        return f"PseudonymKey(key_id={self.key_id!r}, secret=<hidden>)"

    __str__ = __repr__

    def __reduce__(self) -> NoReturn:
        raise TypeError("a PseudonymKey cannot be pickled or copied out of the process")

    @classmethod
    def from_text(cls, text: str, *, key_id: str | None = None) -> PseudonymKey:
        return cls(decode_key_text(text), key_id=key_id)

    @classmethod
    def from_file(cls, path: Path, *, key_id: str | None = None) -> PseudonymKey:
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            raise PseudonymKeyError("the key file does not exist") from None
        except OSError as exc:
            raise PseudonymKeyError(f"the key file cannot be read ({type(exc).__name__})") from None
        try:
            text = raw.decode("ascii")
        except UnicodeDecodeError:
            raise PseudonymKeyError("the key file must hold the key as hex or base64 text") from None
        return cls.from_text(text, key_id=key_id)


def decode_key_text(text: str) -> bytes:
    """Decode hex or base64 key text (see the module docstring). Raises PseudonymKeyError."""
    t = "".join(text.split())
    if not t:
        raise PseudonymKeyError("the key is empty")
    kind = None
    if t.startswith(("hex:", "base64:")):
        kind, _, t = t.partition(":")
    elif _HEX.fullmatch(t) and len(t) % 2 == 0:
        kind = "hex"
    try:
        secret = bytes.fromhex(t) if kind == "hex" else base64.b64decode(t, validate=True)
    except (ValueError, binascii.Error):
        raise PseudonymKeyError("the key is neither valid hex nor valid base64") from None
    if len(secret) < MIN_KEY_BYTES:
        raise PseudonymKeyError(
            f"the key is too short ({len(secret)} bytes); at least {MIN_KEY_BYTES} random bytes are required"
        )
    return secret
