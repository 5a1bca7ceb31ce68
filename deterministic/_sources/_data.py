"""Validation of plain-data RNG states: every failure is a ``ValueError`` naming the field."""

from __future__ import annotations

TYPE_CHECKING = False  # typing is not imported at run time: it costs milliseconds
if TYPE_CHECKING:
    from typing import Any

__all__ = ["expect_fields", "expect_float", "expect_hex", "expect_int", "expect_words"]


def _kind(value: object) -> str:
    return type(value).__name__


def expect_fields(data: object, field: str, names: tuple[str, ...]) -> dict[str, Any]:
    """Check that ``data`` is a dict with exactly the string keys ``names``.

    Args:
        data: The value to check.
        field: Its path in the state dict, for the message.
        names: The required keys.

    Returns:
        ``data``.

    Raises:
        ValueError: If ``data`` is not such a dict.
    """
    if not isinstance(data, dict):
        raise ValueError(f"{field} must be a dict, not {_kind(data)}")
    if set(data) != set(names):
        raise ValueError(f"{field} must have exactly the keys {sorted(names)}, not {sorted(map(str, data))}")
    return data


def expect_int(value: object, field: str, low: int, high: int) -> int:
    """Check that ``value`` is an int (not a bool) in ``[low, high]``.

    Args:
        value: The value to check.
        field: Its path in the state dict.
        low: The smallest allowed value.
        high: The largest allowed value.

    Returns:
        ``value``.

    Raises:
        ValueError: If it is not.
    """
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"{field} must be an int, not {_kind(value)}")
    if not low <= value <= high:
        raise ValueError(f"{field} must lie in [{low}, {high}], not {value}")
    return value


def expect_float(value: object, field: str, allow_none: bool = False) -> float | None:
    """Check that ``value`` is a float (or ``None`` when allowed).

    Args:
        value: The value to check.
        field: Its path in the state dict.
        allow_none: Whether ``None`` is accepted.

    Returns:
        ``value``.

    Raises:
        ValueError: If it is not.
    """
    if value is None and allow_none:
        return None
    if not isinstance(value, float):
        accepted = "a float or None" if allow_none else "a float"
        raise ValueError(f"{field} must be {accepted}, not {_kind(value)}")
    return value


def expect_words(value: object, field: str, length: int) -> list[int]:
    """Check that ``value`` is a list of ``length`` unsigned 32-bit ints.

    Args:
        value: The value to check.
        field: Its path in the state dict.
        length: The required length.

    Returns:
        A copy of the list.

    Raises:
        ValueError: If it is not.
    """
    if not isinstance(value, list):
        raise ValueError(f"{field} must be a list, not {_kind(value)}")
    if len(value) != length:
        raise ValueError(f"{field} must have {length} entries, not {len(value)}")
    for index, word in enumerate(value):
        expect_int(word, f"{field}[{index}]", 0, 2**32 - 1)
    return list(value)


def expect_hex(value: object, field: str) -> str:
    """Check that ``value`` is a non-empty hexadecimal string of whole bytes.

    Upper case and whitespace between bytes (which ``bytes.fromhex`` allows) are
    accepted and normalised away, so that equal states compare equal.

    Args:
        value: The value to check.
        field: Its path in the state dict.

    Returns:
        The canonical form: lower-case hex digits, no whitespace.

    Raises:
        ValueError: If it is not.
    """
    if not isinstance(value, str):
        raise ValueError(f"{field} must be a hex string, not {_kind(value)}")
    try:
        decoded = bytes.fromhex(value)
    except ValueError:
        raise ValueError(f"{field} is not a valid hex string") from None
    if not decoded:
        raise ValueError(f"{field} must not be empty")
    return decoded.hex()
