"""Mask encoding: lowercase hex of numpy-packed bits, the one form masks travel in."""

from __future__ import annotations

import hashlib

import numpy as np


class MaskError(ValueError):
    """A mask that does not fit what it is used for."""


def encode_mask(mask: np.ndarray) -> str:
    """Packs a 1-D boolean mask as lowercase hex.

    Args:
        mask: 1-D array of bools (or 0/1).

    Returns:
        Hex of `np.packbits(mask)`: first bit = most significant bit of the first byte, padding bits zero.

    """
    bits = np.asarray(mask)
    if bits.ndim != 1:
        raise MaskError(f"a mask must be 1-D, got shape {bits.shape}")
    return np.packbits(bits.astype(bool)).tobytes().hex()


def decode_mask(text: str, length: int) -> np.ndarray:
    """Unpacks a hex mask of `length` bits.

    Args:
        text: hex as made by `encode_mask`.
        length: the number of bits the mask must have.

    Returns:
        A boolean array of `length` bits.

    Raises:
        MaskError: bad hex, the wrong number of bytes, or padding bits that are set.

    """
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raise MaskError(f"a mask must be hex digits, got {text[:40]!r}") from None
    expected_bytes = (length + 7) // 8
    if len(raw) != expected_bytes:
        raise MaskError(f"a mask of {length} bits needs {expected_bytes} bytes, got {len(raw)}")
    bits = np.unpackbits(np.frombuffer(raw, dtype=np.uint8))
    if bits[length:].any():
        raise MaskError("a mask's padding bits after the last one must be zero")
    return bits[:length].astype(bool)


def active_fraction(mask: np.ndarray) -> float:
    """The complexity objective: the share of ones in the mask."""
    return float(np.count_nonzero(mask)) / len(mask)


def fitness_key(feature_key: str, protocol_key: str, mask: np.ndarray) -> str:
    """The fitness cache key of one mask: exact because fitness is deterministic in these three.

    Args:
        feature_key: the content address of the feature set.
        protocol_key: the protocol fingerprint of the experiment config.
        mask: the mask.

    Returns:
        A hex SHA-256 digest.

    """
    digest = hashlib.sha256()
    for part in (feature_key, protocol_key, str(len(mask)), encode_mask(mask)):
        digest.update(part.encode())
        digest.update(b"\0")
    return digest.hexdigest()
