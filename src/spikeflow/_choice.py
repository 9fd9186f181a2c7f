"""``Choice``: the base of spikeflow's mode enums, parsed from their names."""

from __future__ import annotations

import enum


class Choice(enum.Enum):
    """An enum whose members are also accepted as their string values.

    Subclasses override :meth:`_what` to name what they choose in error messages.
    """

    @classmethod
    def _what(cls) -> str:
        return cls.__name__

    @classmethod
    def parse(cls, value):
        """``value`` as a member: a member is returned as is, a string by its value."""
        if isinstance(value, cls):
            return value
        try:
            return cls(str(value).lower())
        except ValueError:
            raise ValueError(
                f"unknown {cls._what()} {value!r}; expected one of {[m.value for m in cls]}"
            ) from None
