"""JSON files that vouch for themselves: the sha256 of their content inside them, checked on every read."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from typing import Any

from evoprune.shared.atomic_files import write_atomic
from evoprune.shared.parquet_files import CorruptFileError
from evoprune.shared.storage import StoragePath

# The last key of a sealed object; files written before seals have none and are read as they are. The
# digest covers the object without it in compact JSON, so indentation does not matter and a reader that
# does not know seals only sees one more key.
SEAL_KEY = "content_sha256"
DIGEST_PATTERN = re.compile(r"[0-9a-fA-F]{64}")
DAMAGED_ADVICE = "restore it from a backup, or run the experiment again into a new directory (--out)"


def content_digest(data: Mapping[str, object]) -> str:
    """The sha256 of a JSON object's content in compact form (equal values give equal digests).

    Args:
        data: the object, without its seal.

    Returns:
        64 hex digits.

    """
    return hashlib.sha256(json.dumps(data, separators=(",", ":")).encode()).hexdigest()


def sealed(data: Mapping[str, object]) -> dict[str, object]:
    """`data` with its seal as the last key (any older seal replaced)."""
    content = {key: value for key, value in data.items() if key != SEAL_KEY}
    return {**content, SEAL_KEY: content_digest(content)}


def unsealed(data: Any, name: str) -> Any:
    """Check a parsed object's seal and return the object without it; unsealed data is returned as it is.

    Args:
        data: the parsed JSON.
        name: the file's name, for the message.

    Returns:
        The content.

    Raises:
        CorruptFileError: the seal is not that of the content (a byte changed since it was written).

    """
    if not isinstance(data, dict) or not data:
        return data
    last_key, last_value = next(reversed(data.items()))
    if last_key != SEAL_KEY:
        # a seal whose key name changed would leave the file looking as if written before seals
        if isinstance(last_value, str) and DIGEST_PATTERN.fullmatch(last_value):
            raise CorruptFileError(f"{name} is damaged: its seal's name is changed; {DAMAGED_ADVICE}")
        if SEAL_KEY not in data:
            return data
    content = {key: value for key, value in data.items() if key != SEAL_KEY}
    if data[SEAL_KEY] != content_digest(content):
        raise CorruptFileError(
            f"{name} is damaged: its content does not match its sha256 ({SEAL_KEY}); {DAMAGED_ADVICE}"
        )
    return content


def parse_sealed_json(text: str | bytes, name: str) -> Any:
    """Parse a sealed JSON file's text and check its seal (see `unsealed`).

    Args:
        text: the file's content.
        name: the file's name, for the message.

    Returns:
        The content, without the seal.

    Raises:
        CorruptFileError: not JSON (cut short, say) or a seal that does not match.

    """
    try:
        data = json.loads(text)
    except (ValueError, UnicodeDecodeError) as error:
        raise CorruptFileError(f"{name} is damaged: it is not JSON ({error}); {DAMAGED_ADVICE}") from None
    return unsealed(data, name)


def read_sealed_json(path: StoragePath) -> Any:
    """Read a JSON file and check its seal when it has one.

    Args:
        path: the file.

    Returns:
        The content, without the seal.

    Raises:
        FileNotFoundError: there is no such file.
        CorruptFileError: it is damaged; the message names it and what to do.

    """
    return parse_sealed_json(path.read_bytes(), str(path))


def write_sealed_json(path: StoragePath, data: Mapping[str, object], *, indent: int | None = None) -> None:
    """Replace `path` atomically with `data` sealed by its sha256.

    Args:
        path: the file.
        data: a JSON object.
        indent: None for compact JSON, else the indentation people read it with.

    """
    separators = (",", ":") if indent is None else None
    write_atomic(path, json.dumps(sealed(data), indent=indent, separators=separators))
