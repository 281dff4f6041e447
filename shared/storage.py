"""Where results and inputs live: a local `Path`, or an `ObjectPath` on object storage (s3://, gs://)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow.fs as pafs

# URI schemes that name object storage; pyarrow's `FileSystem.from_uri` resolves each one, reading the
# store's standard credentials (AWS_ACCESS_KEY_ID, AWS_REGION, AWS_ENDPOINT_URL, ~/.aws/config; for GCS,
# GOOGLE_APPLICATION_CREDENTIALS or the metadata server) exactly as the store's own tools do
OBJECT_SCHEMES = ("s3", "gs", "gcs")
# reads of an object that was replaced while it was read, before giving up
READ_ATTEMPTS = 20


@dataclass(frozen=True)
class ObjectPath:
    """An object (or a key prefix, standing for a folder) on object storage, with `Path`'s methods.

    Object stores have no folders and no rename: a "folder" exists when an object lies under its prefix,
    `mkdir` does nothing, and `write_bytes` replaces an object whole with one upload, which readers see
    entirely or not at all (S3 and GCS make a completed upload visible atomically).
    """

    scheme: str
    key: str  # "bucket/prefix/name", no scheme, no trailing slash
    filesystem: pafs.FileSystem = field(compare=False, repr=False)

    def __str__(self) -> str:
        return f"{self.scheme}://{self.key}"

    def __truediv__(self, name: str | os.PathLike[str]) -> ObjectPath:
        parts = [part for part in str(name).split("/") if part]
        return ObjectPath(self.scheme, "/".join([self.key, *parts]), self.filesystem)

    @property
    def name(self) -> str:
        """The last part of the key."""
        return self.key.rsplit("/", 1)[-1]

    @property
    def suffix(self) -> str:
        """The name's extension (with its dot), as `Path.suffix`."""
        return Path(self.name).suffix

    @property
    def stem(self) -> str:
        """The name without its extension, as `Path.stem`."""
        return Path(self.name).stem

    @property
    def parent(self) -> ObjectPath:
        """The prefix one level up (the bucket itself at most)."""
        head = self.key.rsplit("/", 1)[0] if "/" in self.key else self.key
        return ObjectPath(self.scheme, head, self.filesystem)

    def with_name(self, name: str) -> ObjectPath:
        """The sibling object called `name`."""
        return self.parent / name

    def _type(self) -> pafs.FileType:
        return self.filesystem.get_file_info(self.key).type

    def exists(self) -> bool:
        """Whether an object, or anything under this prefix, exists."""
        return self._type() != pafs.FileType.NotFound

    def is_dir(self) -> bool:
        """Whether objects lie under this prefix."""
        return self._type() == pafs.FileType.Directory

    def is_file(self) -> bool:
        """Whether this is an object."""
        return self._type() == pafs.FileType.File

    def is_symlink(self) -> bool:
        """Always False: object stores have no links."""
        return False

    def iterdir(self) -> Iterator[ObjectPath]:
        """The objects and prefixes directly under this prefix."""
        selector = pafs.FileSelector(self.key, recursive=False, allow_not_found=True)
        for info in self.filesystem.get_file_info(selector):
            yield ObjectPath(self.scheme, info.path.rstrip("/"), self.filesystem)

    def mkdir(self, mode: int = 0o777, parents: bool = False, exist_ok: bool = False) -> None:
        """Nothing to do: a prefix exists once an object is written under it (the signature is `Path`'s)."""

    def read_bytes(self) -> bytes:
        """The object's content, all of one version of it.

        pyarrow reads an object with ranged GETs after a HEAD, so an object replaced meanwhile could be
        read as the start of one version and the rest of another (seen against a real server). The read
        is therefore checked against the object's size and modification time before and after, and done
        again when they moved; a replacement of equal size within the store's one-second clock is left to
        the files' own digests (checkpoints and Parquet files carry a sha256).

        Raises:
            FileNotFoundError: there is no such object.
            OSError: the object kept changing while it was read.

        """
        failure: OSError | None = None
        for _ in range(READ_ATTEMPTS):
            before = self._version()
            try:
                with self.filesystem.open_input_stream(self.key) as stream:
                    data = bytes(stream.read())
            except FileNotFoundError:
                raise FileNotFoundError(f"{self} does not exist") from None
            except OSError as error:
                # e.g. HTTP 416: the object shrank between the HEAD and the GET (replaced under the read)
                failure = error
                continue
            if len(data) == before[0] and self._version() == before:
                return data
        raise OSError(f"{self} could not be read whole ({READ_ATTEMPTS} attempts): {failure}")

    def _version(self) -> tuple[int | None, object]:
        info = self.filesystem.get_file_info(self.key)
        if info.type == pafs.FileType.NotFound:
            raise FileNotFoundError(f"{self} does not exist")
        return info.size, info.mtime

    def read_text(self, encoding: str | None = "utf-8", errors: str | None = None) -> str:
        """The object's content decoded (UTF-8 by default)."""
        return self.read_bytes().decode(encoding or "utf-8", errors or "strict")

    def write_bytes(self, data: bytes) -> int:
        """Replace the object whole with one upload: readers see the old object or the new, never a part.

        Returns:
            The number of bytes written.

        """
        with self.filesystem.open_output_stream(self.key) as stream:
            stream.write(data)
        return len(data)

    def write_text(self, text: str, encoding: str | None = "utf-8") -> int:
        """Replace the object with `text` encoded (see `write_bytes`)."""
        return self.write_bytes(text.encode(encoding or "utf-8"))

    def unlink(self, missing_ok: bool = False) -> None:
        """Delete the object.

        Raises:
            FileNotFoundError: there is none and `missing_ok` is False.

        """
        if not self.is_file():
            if missing_ok:
                return
            raise FileNotFoundError(f"{self} does not exist")
        self.filesystem.delete_file(self.key)

    def copy_to(self, target: ObjectPath) -> None:
        """Copy the object inside the store (one server-side copy: `target` appears whole)."""
        self.filesystem.copy_file(self.key, target.key)

    def remove_tree(self) -> None:
        """Delete every object under this prefix, and its folder markers."""
        if self.is_dir():
            self.filesystem.delete_dir(self.key)


# what every results, cache and input path may be
StoragePath = Path | ObjectPath


def upload_folder(local: Path, target: ObjectPath, *, last: str) -> list[str]:
    """Replace the objects under `target` with a local folder's files, `last` uploaded after all others.

    Object storage has no rename, so a folder cannot be swapped in whole; `last` (an index naming the
    other files) goes up only when every file it names is there, and objects left from an earlier upload
    are deleted only after it, so a reader that follows the index never finds a file missing.

    Args:
        local: the folder (its sub-folders are uploaded too).
        target: the prefix to fill.
        last: the name, relative to `local`, of the file to upload last; it must exist.

    Returns:
        The uploaded files' names relative to `local`, `last` at the end.

    Raises:
        FileNotFoundError: `local` holds no `last`.

    """
    if not (local / last).is_file():
        raise FileNotFoundError(f"{local / last} does not exist: nothing marks the upload as complete")
    names = sorted(path.relative_to(local).as_posix() for path in local.rglob("*") if path.is_file())
    names.remove(last)
    names.append(last)
    for name in names:
        (target / name).write_bytes((local / name).read_bytes())
    kept = {target.key + "/" + name for name in names}
    if target.is_dir():
        selector = pafs.FileSelector(target.key, recursive=True)
        for info in target.filesystem.get_file_info(selector):
            if info.type == pafs.FileType.File and info.path not in kept:
                target.filesystem.delete_file(info.path)
    return names


def plain_file_size(path: StoragePath) -> int | None:
    """The size of a plain file: a local file that is no link, or an object (one request to the store).

    Args:
        path: the file.

    Returns:
        Its size in bytes; None when there is no such file, or it is a link or a folder.

    """
    if isinstance(path, ObjectPath):
        info = path.filesystem.get_file_info(path.key)
        return info.size if info.type == pafs.FileType.File else None
    if path.is_symlink() or not path.is_file():
        return None
    return path.stat().st_size


def is_object_uri(text: str) -> bool:
    """Whether `text` names object storage (s3://, gs://) rather than a local path."""
    scheme, separator, _ = text.partition("://")
    return bool(separator) and scheme.lower() in OBJECT_SCHEMES


def storage_path(value: str | os.PathLike[str] | ObjectPath) -> StoragePath:
    """A local `Path`, or an `ObjectPath` for an s3:// or gs:// URI.

    Args:
        value: a path or URI (an `ObjectPath` is returned as it is).

    Returns:
        The path.

    Raises:
        ValueError: an object-storage URI without a bucket, or one the store's settings cannot reach.

    """
    if isinstance(value, ObjectPath | Path):
        return value
    text = os.fspath(value)
    if not is_object_uri(text):
        return Path(text)
    scheme = text.partition("://")[0].lower()
    try:
        filesystem, key = pafs.FileSystem.from_uri(text)
    except (OSError, ValueError) as error:  # pyarrow's ArrowInvalid and ArrowIOError are these
        raise ValueError(f"{text}: {error}") from None
    key = key.strip("/")
    if not key:
        raise ValueError(f"{text} names no bucket")
    return ObjectPath(scheme, key, filesystem)
