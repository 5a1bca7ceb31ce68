"""Seed validation and derivation: the only place seeds are interpreted."""

from __future__ import annotations

import operator
import os

TYPE_CHECKING = False  # typing is not imported at run time: it costs milliseconds
if TYPE_CHECKING:
    from typing import Any

__all__ = ["SEED_RANGE", "SeedLike", "derive_seed", "draw_fresh_seed", "resolve_seed", "seed_from_text"]

#: Seeds used verbatim lie in ``range(0, 2**32)``, the range every RNG accepts.
SEED_RANGE = 2**32

#: What :func:`resolve_seed` accepts (``None`` draws a fresh seed per entry).
SeedLike = int | str | bytes | None

# The personalisation string keeps these digests disjoint from any other use of BLAKE2b.
_PERSON = b"deterministic"
_ACCEPTED_SEEDS = "an int (or int-like such as numpy.int64), a str, bytes or None"
_ACCEPTED_KEYS = "int (or int-like such as numpy.int64), str or bytes"


def _is_bool(value: object) -> bool:
    # numpy.bool_ is not a subclass of bool; its name is "bool" (NumPy 2) or "bool_".
    return isinstance(value, bool) or type(value).__name__ in ("bool", "bool_")


def _as_int(value: object) -> int | None:
    """Return ``value`` as an int if it is int-like (but not a bool), else ``None``."""
    if _is_bool(value):
        return None
    if isinstance(value, int):
        return int(value)
    try:
        return operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        return None


def _encode_key(key: object) -> bytes:
    """Encode one key with its type and length so distinct key tuples never share an encoding."""
    number = _as_int(key)
    if number is not None:
        length = (number.bit_length() + 8) // 8  # room for the sign bit
        payload = number.to_bytes(length, "big", signed=True)
        tag = b"i"
    elif isinstance(key, str):
        payload = key.encode("utf-8", "surrogatepass")
        tag = b"s"
    elif isinstance(key, (bytes, bytearray, memoryview)):
        payload = bytes(key)
        tag = b"b"
    else:
        raise TypeError(f"derive_seed() keys must be {_ACCEPTED_KEYS}, not {type(key).__name__}")
    return tag + len(payload).to_bytes(8, "big") + payload


def derive_seed(*keys: object) -> int:
    """Derive a stable seed in ``[0, 2**32)`` from ints, strings and bytes.

    The keys are encoded one by one as a type tag (``i``, ``s`` or ``b``), an 8-byte
    big-endian payload length and the payload (a two's-complement big-endian int,
    UTF-8 text or the raw bytes), preceded by the number of keys. The seed is the
    32-bit big-endian value of the BLAKE2b digest (``digest_size=4``,
    ``person=b"deterministic"``) of that encoding. Because type and length are part of
    the encoding, ``(1, 2)`` and ``(12,)``, or ``("1", 2)`` and ``(1, 2)``, cannot
    collide by construction, and the result never depends on ``PYTHONHASHSEED``.

    Args:
        *keys: One or more ints (or int-likes such as ``numpy.int64``), strs or bytes.

    Returns:
        An int in ``[0, 2**32)``.

    Raises:
        TypeError: If no key is given, or a key is of another type (``bool`` and
            ``float`` included).
    """
    if not keys:
        raise TypeError(f"derive_seed() needs at least one key ({_ACCEPTED_KEYS})")
    encoded = [len(keys).to_bytes(8, "big")]
    encoded.extend(_encode_key(key) for key in keys)
    digest = _blake2b()(b"".join(encoded), digest_size=4, person=_PERSON).digest()
    return int.from_bytes(digest, "big")


def _blake2b() -> Any:
    """``blake2b``, imported on first use; from ``_blake2`` directly where it exists.

    ``hashlib`` costs milliseconds to import (it loads OpenSSL's bindings), which every
    child interpreter of a program under ``run`` would pay at startup.
    """
    try:
        from _blake2 import blake2b  # noqa: PLC0415
    except ImportError:  # an interpreter built without it: hashlib falls back to OpenSSL
        from hashlib import blake2b  # noqa: PLC0415
    return blake2b


def draw_fresh_seed() -> int:
    """Draw a seed in ``[0, 2**32)`` from OS entropy and log it so the run can be repeated.

    Returns:
        The fresh seed.
    """
    import logging  # noqa: PLC0415 - imported on first use to keep `import deterministic` fast

    seed = int.from_bytes(os.urandom(4), "big")
    logging.getLogger("deterministic").info(
        "deterministic: seed=None drew seed %d; pass seed=%d to reproduce", seed, seed
    )
    return seed


def resolve_seed(seed: object) -> int | None:
    """Validate a user seed and map it into ``[0, 2**32)``; ``None`` stays ``None``.

    Int-likes in range are used verbatim, so scopes match the classic seeding recipe
    bit for bit. Other ints (negative or too large), strs and bytes are mapped through
    :func:`derive_seed`. ``None`` means "draw a fresh seed at each entry".

    Args:
        seed: The seed as the user gave it.

    Returns:
        The effective seed, or ``None`` for a seed to be drawn at entry.

    Raises:
        TypeError: If ``seed`` is a bool, a float or of any other type.
    """
    if seed is None:
        return None
    number = _as_int(seed)
    if number is not None:
        return number if 0 <= number < SEED_RANGE else derive_seed(number)
    if isinstance(seed, (str, bytes)):
        return derive_seed(seed)
    raise TypeError(f"seed must be {_ACCEPTED_SEEDS}, not {type(seed).__name__}")


def seed_from_text(text: str) -> int:
    """Resolve a seed given on a command line: decimal digits are an int, a word is a str.

    A value that looks like a number but is not plain decimal digits (``1.5``, ``0x10``,
    ``1e3``, ``1_000``, `` 7``) is refused: whoever typed it meant a number, and taking
    it as a word would silently give an unrelated seed.

    Args:
        text: The option's value.

    Returns:
        The effective seed.

    Raises:
        ValueError: If ``text`` is empty or looks numeric without being a decimal int.
    """
    if not text:
        raise ValueError("the seed must not be empty")
    value: int | str
    if _is_decimal(text):
        value = int(text, 10)
    elif _looks_numeric(text):
        raise ValueError(
            f"the seed {text!r} looks like a number but is not a decimal int; "
            f"give digits only (like 1000), or a word"
        )
    else:
        value = text
    effective = resolve_seed(value)
    assert effective is not None
    return effective


def _is_decimal(text: str) -> bool:
    digits = text[1:] if text.startswith("-") else text
    return digits.isascii() and digits.isdigit()


def _looks_numeric(text: str) -> bool:
    """Return whether ``text`` parses as some number (float, prefixed or underscored int) or is padded."""
    stripped = text.strip()
    if text != stripped:
        return bool(stripped) and (_is_decimal(stripped) or _looks_numeric(stripped))
    for parse in (float, lambda value: int(value, 0)):
        try:
            parse(text)
        except ValueError:
            continue
        return any(character.isdigit() for character in text)
    return False
