"""Sources registered by users: a process-global RNG given as three functions."""

from __future__ import annotations

from ._data import expect_fields

TYPE_CHECKING = False  # typing is not imported at run time: it costs milliseconds
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

__all__ = ["CustomSource", "is_plain_data"]


def is_plain_data(value: object) -> bool:
    """Return whether ``value`` is built only from dict (str keys), list, int, float, str, bool and None."""
    if value is None or type(value) in (bool, int, float, str):
        return True
    if type(value) is list:
        return all(is_plain_data(item) for item in value)
    if type(value) is dict:
        return all(type(key) is str and is_plain_data(item) for key, item in value.items())
    return False


class CustomSource:
    """A source from :func:`register_source`; it is always available once registered.

    Its states take part in snapshots when ``capture`` returns plain data (dicts, lists,
    ints, floats, strs, bools, ``None``); ``restore`` then receives that data back.
    """

    module = ""  # nothing to import: a registered source is usable at once

    def __init__(
        self,
        name: str,
        capture: Callable[[], Any],
        seed: Callable[[int], None],
        restore: Callable[[Any], None],
    ) -> None:
        """Wrap the three functions of a registered source."""
        self.name = name
        self._capture = capture
        self._seed = seed
        self._restore = restore

    def available(self) -> bool:
        """Return ``True``."""
        return True

    def capture(self) -> Any:
        """Return the registered ``capture()``."""
        return self._capture()

    def seed(self, seed: int) -> None:
        """Call the registered ``seed(seed)``."""
        self._seed(seed)

    def restore(self, state: Any) -> None:
        """Call the registered ``restore(state)``."""
        self._restore(state)

    def to_data(self, state: Any) -> dict[str, Any] | None:
        """Return ``{"state": state}`` when the state is plain data, else ``None`` (not snapshotted)."""
        return {"state": state} if is_plain_data(state) else None

    def check_data(self, data: object, field: str) -> dict[str, Any]:
        """Validate plain data from :meth:`to_data` (see ``Source.check_data``)."""
        fields = expect_fields(data, field, ("state",))
        if not is_plain_data(fields["state"]):
            raise ValueError(f"{field}.state must be plain data (dict, list, int, float, str, bool, None)")
        return {"state": fields["state"]}

    def from_data(self, data: dict[str, Any]) -> Any:
        """Return the state for :meth:`restore`."""
        return data["state"]
