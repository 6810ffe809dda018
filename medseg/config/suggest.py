"""Name the closest valid choice when a config names something unknown ("did you mean ...?")."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import Any

from medseg.errors import ConfigError


def closest(name: object, choices: Iterable[str]) -> str | None:
    """The valid choice nearest to ``name`` (difflib ratio >= 0.6), or None."""
    found = difflib.get_close_matches(str(name), list(choices), n=1, cutoff=0.6)
    return found[0] if found else None


def unknown_choice(what: str, name: object, choices: Iterable[str]) -> ConfigError:
    """The error for an unknown value or key, e.g. ``unknown loss.name 'dice_focall'``.

    Args:
        what: The dotted config key being set (``"model.name"``) or holding the key
            (``"model.params"``, then ``name`` is the unknown key).
        name: What the user wrote.
        choices: Every valid value or key; the closest one is suggested.

    Returns:
        A :class:`~medseg.errors.ConfigError` (one line) listing the valid choices in its hint.
    """
    valid = list(choices)
    match = closest(name, valid)
    guess = f" (did you mean {match!r}?)" if match else ""
    if what.endswith(".name"):
        return ConfigError(f"unknown {what} {name!r}{guess}", hint=f"valid: {', '.join(valid)}")
    return ConfigError(f"unknown key {what}.{name}{guess}", hint=f"valid keys: {', '.join(valid)}")


def unknown_keys(exc: Any) -> list[str]:
    """The top-level keys a pydantic ``ValidationError`` rejected as unknown (``extra="forbid"``)."""
    return [str(e["loc"][0]) for e in exc.errors() if e["type"] == "extra_forbidden" and e["loc"]]
