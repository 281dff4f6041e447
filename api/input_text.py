"""Posted text that JSON and YAML admit but nothing downstream can store: lone surrogates, deep nesting."""

from __future__ import annotations

from typing import Any

# a config is a few levels deep; this bound keeps every walk over it (validation, JSON, YAML) far from
# Python's recursion limit
MAX_DEPTH = 32


def unstorable_text(text: str) -> str | None:
    """Why `text` cannot be stored, or None when it can.

    Args:
        text: a posted string.

    Returns:
        A message, or None.

    """
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        # JSON's "\ud800" escape decodes to a lone surrogate, which no UTF-8 writer (JSON, Redis) accepts
        return f"holds a lone surrogate (U+{ord(text[error.start]):04X}), which is not valid Unicode text"
    return None


def value_problem(value: Any, location: str, depth: int = 0) -> str | None:
    """The first unstorable string (key or value) or over-deep nesting in a posted value.

    Args:
        value: parsed JSON or YAML.
        location: the dotted field path of `value`, for the message.
        depth: how deep `value` already is.

    Returns:
        "location: message", or None.

    """
    if depth > MAX_DEPTH:
        return f"{location}: nested more than {MAX_DEPTH} levels deep"
    if isinstance(value, str):
        problem = unstorable_text(value)
        return f"{location}: {problem}" if problem else None
    if isinstance(value, dict):
        for key, item in value.items():
            name = key if isinstance(key, str) else repr(key)
            problem = unstorable_text(name) if isinstance(key, str) else None
            if problem:
                return f"{location}: a key {problem}"
            found = value_problem(item, f"{location}.{name}", depth + 1)
            if found:
                return found
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            found = value_problem(item, f"{location}.{index}", depth + 1)
            if found:
                return found
    return None


def storable(value: Any) -> Any:
    """`value` with every lone surrogate replaced by U+FFFD, so that an answer quoting bad input can be sent.

    Args:
        value: JSON-ready data (a 422 detail that echoes the input).

    Returns:
        The same shape, every string valid UTF-8.

    """
    if isinstance(value, str):
        return value if unstorable_text(value) is None else value.encode("utf-8", "replace").decode("utf-8")
    if isinstance(value, dict):
        return {storable(key): storable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [storable(item) for item in value]
    return value
