"""Parquet files that vouch for themselves: page checksums and a whole-file sha256, checked before parsing."""

from __future__ import annotations

import hashlib

import pyarrow as pa
import pyarrow.parquet as pq

from evoprune.shared.atomic_files import atomic_file
from evoprune.shared.storage import StoragePath, storage_path

# The digest lives in the footer's key-value metadata, so file and digest are replaced in one rename. It
# covers the whole file with its own 64 hex digits read as zeros: written as a placeholder, then patched in
# place (same length, so no offset moves). Checked before pyarrow parses anything, because a flipped bit in
# a footer can abort the process inside pyarrow (measured on 26.0: 4 of 300 flips), not just raise.
DIGEST_KEY = b"evoprune.file_sha256"
DIGEST_MARKER = b"evoprune-file-sha256:"
DIGEST_HEX_LENGTH = 64
_PLACEHOLDER = b"0" * DIGEST_HEX_LENGTH


class CorruptFileError(OSError):
    """A file whose bytes are not those that were written (cut short or changed); the message names it."""


def parquet_bytes(table: pa.Table) -> bytes:
    """Serialise a table as a self-vouching Parquet file: page checksums and an embedded whole-file sha256.

    Args:
        table: what to write (its schema metadata is kept).

    Returns:
        The file's bytes.

    """
    metadata = dict(table.schema.metadata or {})
    metadata[DIGEST_KEY] = DIGEST_MARKER + _PLACEHOLDER
    sink = pa.BufferOutputStream()
    pq.write_table(table.replace_schema_metadata(metadata), sink, write_page_checksum=True)
    data = bytearray(sink.getvalue().to_pybytes())
    # the literal marker occurs once, in the footer (the Arrow schema copy holds it base64-encoded)
    start = data.rfind(DIGEST_MARKER) + len(DIGEST_MARKER)
    assert data.count(DIGEST_MARKER) == 1, "the digest marker must occur exactly once"
    data[start : start + DIGEST_HEX_LENGTH] = hashlib.sha256(data).hexdigest().encode()
    return bytes(data)


def write_parquet(path: StoragePath, table: pa.Table, *, mode: int | None = None) -> None:
    """Replace `path` atomically with a self-vouching Parquet file (see `parquet_bytes`).

    Args:
        path: the file (local or on object storage: the digest covers the uploaded bytes alike).
        table: what to write.
        mode: permission bits (see `shared.atomic_files.atomic_file`).

    """
    data = parquet_bytes(table)
    with atomic_file(path, mode=mode) as handle:
        handle.write(data)


def verify_parquet_bytes(data: bytes, origin: str) -> bool:
    """Check the embedded whole-file digest, when the file has one.

    Args:
        data: the file's bytes.
        origin: the file's name, for the message.

    Returns:
        True when a digest was found and matches; False for a file written without one (before digests).

    Raises:
        CorruptFileError: the digest does not match, or the file ends before a complete digest.

    """
    marker = data.rfind(DIGEST_MARKER)
    if marker < 0:
        return False
    start = marker + len(DIGEST_MARKER)
    end = start + DIGEST_HEX_LENGTH
    recorded = data[start:end]
    view = memoryview(data)
    digest = hashlib.sha256()
    digest.update(view[:start])
    digest.update(_PLACEHOLDER)
    digest.update(view[end:])
    if len(recorded) != DIGEST_HEX_LENGTH or recorded != digest.hexdigest().encode():
        raise CorruptFileError(f"{origin} is damaged: its bytes do not match the sha256 recorded in it")
    return True


def read_verified_parquet(path: StoragePath, *, columns: list[str] | None = None) -> pa.Table:
    """Read a Parquet file, refusing one whose bytes are damaged.

    The embedded digest is checked first (files written before digests have none and are read as they
    are); page checksums are verified where the file has them.

    Args:
        path: the file.
        columns: read only these columns (all when None).

    Returns:
        The table, without the digest in its schema metadata.

    Raises:
        FileNotFoundError: there is no such file.
        CorruptFileError: the file is damaged or not Parquet (the message names it).

    """
    data = storage_path(path).read_bytes()
    verify_parquet_bytes(data, str(path))
    try:
        table = pq.read_table(pa.BufferReader(data), columns=columns, page_checksum_verification=True)
    except (pa.ArrowException, OSError, ValueError) as error:
        raise CorruptFileError(f"{path} is damaged or not a Parquet file: {error}") from None
    return _without_digest(table)


def read_verified_metadata(path: StoragePath) -> dict[bytes, bytes]:
    """The schema metadata of a verified Parquet file (without the digest).

    Args:
        path: the file.

    Returns:
        The key-value metadata.

    Raises:
        FileNotFoundError: there is no such file.
        CorruptFileError: the file is damaged or not Parquet.

    """
    data = storage_path(path).read_bytes()
    verify_parquet_bytes(data, str(path))
    try:
        schema = pq.read_schema(pa.BufferReader(data))
    except (pa.ArrowException, OSError, ValueError) as error:
        raise CorruptFileError(f"{path} is damaged or not a Parquet file: {error}") from None
    return _metadata_without_digest(schema.metadata)


def _metadata_without_digest(metadata: dict[bytes, bytes] | None) -> dict[bytes, bytes]:
    return {key: value for key, value in (metadata or {}).items() if key != DIGEST_KEY}


def _without_digest(table: pa.Table) -> pa.Table:
    return table.replace_schema_metadata(_metadata_without_digest(table.schema.metadata) or None)
