"""Posted text that JSON and YAML admit but nothing downstream can store: lone surrogates, deep nesting."""

from __future__ import annotations

from typing import Any

import yaml

# a config is a few levels deep; this bound keeps every walk over it (validation, JSON, YAML) far from
# Python's recursion limit
MAX_DEPTH = 32
# nodes that aliases may add to a posted YAML document once expanded: a config repeats a value or a section
# now and then; nine levels of nine aliases in 335 bytes expand to 387 million, and every walk over the
# parsed value (this module's, validation, JSON) is a walk over the expansion
MAX_ALIAS_NODES = 10_000


class AliasExpansionError(ValueError):
    """A YAML document whose aliases expand past MAX_ALIAS_NODES, or refer to the node they are in."""


def _expanded_nodes(node: yaml.Node, sizes: dict[int, int], open_nodes: set[int], budget: int) -> int:
    """The nodes `node` stands for with every alias expanded, counted once per node thanks to `sizes`."""
    key = id(node)
    if key in sizes:
        return sizes[key]
    if key in open_nodes:
        raise AliasExpansionError("an alias refers to a collection that contains it (a recursive structure)")
    children: list[yaml.Node] = []
    if isinstance(node, yaml.SequenceNode):
        children = list(node.value)
    elif isinstance(node, yaml.MappingNode):
        children = [part for pair in node.value for part in pair]
    open_nodes.add(key)
    total = 1
    for child in children:
        total += _expanded_nodes(child, sizes, open_nodes, budget)
        if total > budget:
            break  # the caller refuses; counting the rest would cost what the budget is there to avoid
    open_nodes.discard(key)
    sizes[key] = total
    return total


def _distinct_nodes(node: yaml.Node, seen: set[int]) -> None:
    # iterative: the composer has already refused nesting deep enough to matter, but this walk is cheap
    pending = [node]
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, yaml.SequenceNode):
            pending.extend(current.value)
        elif isinstance(current, yaml.MappingNode):
            pending.extend(part for pair in current.value for part in pair)


def load_yaml_within_budget(text: str) -> Any:
    """Parse one YAML document with PyYAML's safe loader, refusing aliases that expand past a budget.

    PyYAML shares an aliased node rather than copying it, so parsing a bomb is cheap; it is every walk over
    the result afterwards that expands it. The composed graph is measured before anything is built from it.

    Args:
        text: the posted YAML.

    Returns:
        The parsed value.

    Raises:
        yaml.YAMLError: not valid YAML.
        AliasExpansionError: aliases expand to more than MAX_ALIAS_NODES nodes beyond the document's own.
        RecursionError: nesting deep enough to exhaust the composer's stack.

    """
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        seen: set[int] = set()
        _distinct_nodes(node, seen)
        budget = len(seen) + MAX_ALIAS_NODES
        if _expanded_nodes(node, {}, set(), budget) > budget:
            raise AliasExpansionError(
                f"aliases (*name) expand to more than {MAX_ALIAS_NODES} nodes beyond the document's own; "
                "write the repeated values out"
            )
        return loader.construct_document(node)
    finally:
        loader.dispose()


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
