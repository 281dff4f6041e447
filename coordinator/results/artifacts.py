"""The files a results directory offers (results and analyses), named for the API to serve."""

from __future__ import annotations

import json
import re
import shutil
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Literal, TypedDict

import pyarrow as pa
import pyarrow.parquet as pq

from evoprune.coordinator.results.layout import ResultsLayout
from evoprune.shared.parquet_files import CorruptFileError, verify_parquet_bytes, write_parquet
from evoprune.shared.sealed_json import parse_sealed_json
from evoprune.shared.storage import StoragePath, plain_file_size

EXPORT_PREFIX = "export-"
MEDIA_TYPES = {
    "image": "image/png",
    "table": "application/vnd.apache.parquet",
    "json": "application/json",
    "yaml": "application/yaml",
    # a .keras file is a zip archive that only Keras reads: a download
    "model": "application/octet-stream",
}
# files whose bytes are checked before they are served (models are streamed: Keras checks the zip's CRCs
# when it loads one)
CHECKED_KINDS = frozenset({"table", "json", "image"})
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
ArtifactKind = Literal["image", "table", "json", "yaml", "model"]
# results: the experiment's own files; analysis: analysis/; export: exports/
ArtifactSource = Literal["results", "analysis", "export"]
KINDS_BY_SUFFIX: dict[str, ArtifactKind] = {
    ".png": "image",
    ".parquet": "table",
    ".json": "json",
    ".yaml": "yaml",
    ".keras": "model",
    ".tflite": "model",
    ".onnx": "model",
}
# the files of other formats an export may write beside model.keras (a SavedModel is a folder: not served)
EXPORT_OTHER_FILES = ("model.tflite", "model-float16.tflite", "model-int8.tflite", "model.onnx")
_NAMES = ResultsLayout(Path())
RESULT_FILES = (
    (_NAMES.config.name, "the fully resolved experiment config"),
    (_NAMES.summary.name, "hypervolume, evaluation counts, cache hits, wall time, versions"),
    (_NAMES.evaluations.name, "one row per evaluation"),
    (_NAMES.front.name, "each run's Pareto front and the aggregated front (run = -1)"),
    (_NAMES.front_plot.name, "the 3-D Pareto fronts and their 2-D projections"),
    (_NAMES.hypervolume_plot.name, "hypervolume against evaluations, per run"),
)
# Artifact names travel in URLs (GET /experiments/{id}/artifacts/{name}): plain file names only.
# used with fullmatch: `$` with match() also accepts a trailing newline
SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


class ListedArtifact(TypedDict):
    """One file of a results directory that the API may serve."""

    name: str  # unique, a plain file name
    kind: ArtifactKind
    source: ArtifactSource
    path: str  # absolute, or the object's URI
    size_bytes: int
    media_type: str
    description: str


def artifact(name: str, description: str) -> dict[str, str]:
    """An index entry of one analysis file: its name, kind (image, table, json, yaml) and description."""
    return {"name": name, "kind": kind_of(name), "description": description}


def kind_of(name: str) -> ArtifactKind:
    """The kind of a file by its suffix: image, table, json or yaml."""
    return KINDS_BY_SUFFIX[Path(name).suffix]


def list_artifacts(results_dir: StoragePath) -> list[ListedArtifact]:
    """Every file of a results directory the API may serve, with what it is.

    The experiment's own results come first, then the analyses listed in analysis/analysis.json (written
    by `evoprune analyze`), then the exported models (exports/NAME/model.keras and its export.json, written
    by `evoprune export`) as export-NAME.keras and export-NAME.json. Only plain files that exist are listed
    (no links).

    Args:
        results_dir: an experiment's results directory (a local folder, or a prefix on object storage).

    Returns:
        One entry per file (see `ListedArtifact`).

    """
    layout: ResultsLayout[StoragePath] = ResultsLayout(results_dir)
    found = []
    for name, description in RESULT_FILES:
        path = results_dir / name
        size = plain_file_size(path)
        if size is not None:
            found.append(_listed(name, path, size, description, "results"))
    return found + _analysis_files(layout, {entry["name"] for entry in found}) + _export_files(layout)


def _export_files(layout: ResultsLayout[StoragePath]) -> list[ListedArtifact]:
    found = []
    folders: list[StoragePath] = sorted(layout.exports.iterdir(), key=str) if layout.exports.is_dir() else []
    for folder in folders:
        if not SAFE_NAME.match(folder.name) or folder.is_symlink():
            continue
        model, report = layout.export_model(folder.name), layout.export_report(folder.name)
        model_size = plain_file_size(model)
        report_size = plain_file_size(report)
        # a model is listed once its report is written: export.json comes last, after the reload check
        if model_size is None or report_size is None:
            continue
        stem = EXPORT_PREFIX + folder.name
        described = f"the pruned model exported as {folder.name}"
        found.append(_listed(f"{stem}.keras", model, model_size, described, "export"))
        for other in EXPORT_OTHER_FILES:
            size = plain_file_size(folder / other)
            if size is not None:
                name = stem + other.removeprefix("model")
                found.append(
                    _listed(name, folder / other, size, f"{folder.name} exported as {other}", "export")
                )
        found.append(
            _listed(f"{stem}.json", report, report_size, f"what the {folder.name} export measured", "export")
        )
    return found


def _analysis_files(layout: ResultsLayout[StoragePath], taken: set[str]) -> list[ListedArtifact]:
    found: list[ListedArtifact] = []
    analysis = layout.analysis
    try:
        index = json.loads(layout.analysis_index.read_text())
    except (OSError, ValueError):
        return found
    entries = index.get("artifacts", []) if isinstance(index, dict) else []
    for entry in entries:
        listed = entry.get("name") if isinstance(entry, dict) else None
        if not isinstance(listed, str) or not SAFE_NAME.fullmatch(listed) or listed in taken:
            continue
        size = plain_file_size(analysis / listed) if Path(listed).suffix in KINDS_BY_SUFFIX else None
        if size is None:
            continue
        found.append(_listed(listed, analysis / listed, size, str(entry.get("description", "")), "analysis"))
        taken.add(listed)
    return found


def _listed(
    name: str, path: StoragePath, size: int, description: str, source: ArtifactSource
) -> ListedArtifact:
    # only plain files are listed (`plain_file_size`): a link could point anywhere on the server, and the
    # analyses and runs write plain files only
    kind = kind_of(name)
    return {
        "name": name,
        "kind": kind,
        "source": source,
        "path": str(path.resolve() if isinstance(path, Path) else path),
        "size_bytes": size,
        "media_type": MEDIA_TYPES[kind],
        "description": description,
    }


def check_artifact(data: bytes, name: str, kind: str) -> None:
    """Check the bytes of a table or JSON artifact before they are served (other kinds pass as they are).

    Args:
        data: the file's bytes.
        name: its name, for the message.
        kind: its kind (see `kind_of`).

    Raises:
        CorruptFileError: a table whose digest differs (one written before digests must at least parse
            as Parquet), JSON that does not parse or whose seal differs (summary.json), or a PNG whose
            chunks' CRCs differ or that is cut short.

    """
    if kind == "json":
        parse_sealed_json(data, name)
        return
    if kind == "image":
        check_png(data, name)
        return
    try:
        if kind == "table" and not verify_parquet_bytes(data, name):
            pq.read_metadata(pa.BufferReader(data))
    except (ValueError, pa.ArrowException) as error:
        raise CorruptFileError(f"{name} is damaged: {error}") from None


def check_png(data: bytes, name: str) -> None:
    """Check a PNG's signature, every chunk's CRC and that it ends with IEND (so a cut file is found).

    Args:
        data: the file's bytes.
        name: its name, for the message.

    Raises:
        CorruptFileError: it is not whole; the message says what to do.

    """
    advice = "run `evoprune analyze` (POST /experiments/{id}/analysis) again, or restore it from a backup"
    if name in (_NAMES.front_plot.name, _NAMES.hypervolume_plot.name):
        advice = (
            "restore it from a backup; the tables it shows (front.parquet, evaluations.parquet) hold its data"
        )
    if not data.startswith(PNG_SIGNATURE):
        raise CorruptFileError(f"{name} is damaged: not a PNG; {advice}")
    position = len(PNG_SIGNATURE)
    while position + 12 <= len(data):
        length = int.from_bytes(data[position : position + 4], "big")
        chunk_type = data[position + 4 : position + 8]
        end = position + 8 + length
        if end + 4 > len(data):
            break
        if zlib.crc32(data[position + 4 : end]) != int.from_bytes(data[end : end + 4], "big"):
            raise CorruptFileError(f"{name} is damaged: a chunk's CRC differs; {advice}")
        if chunk_type == b"IEND":
            return
        position = end + 4
    raise CorruptFileError(f"{name} is damaged: it is cut short (no IEND chunk); {advice}")


def fresh_staging(results_dir: Path) -> Path:
    """An empty folder to write a new analysis into; the current one stays untouched until it is done."""
    staging = ResultsLayout(results_dir).analysis_staging
    if staging.exists():
        shutil.rmtree(staging)  # left by an analysis that was interrupted
    staging.mkdir()
    return staging


def publish(results_dir: Path, staging: Path) -> Path:
    """Replace results_dir/analysis with the finished staging folder.

    Args:
        results_dir: the results directory.
        staging: the folder from `fresh_staging`, complete.

    Returns:
        The analysis folder.

    """
    layout = ResultsLayout(results_dir)
    target, previous = layout.analysis, layout.analysis_previous
    if previous.exists():
        shutil.rmtree(previous)
    if target.exists():
        target.rename(previous)
    staging.rename(target)
    if previous.exists():
        shutil.rmtree(previous)
    return target


def discard(staging: Path) -> None:
    """Remove an unfinished staging folder (after a failure); the published analysis is kept."""
    shutil.rmtree(staging, ignore_errors=True)


def write_table(path: Path, rows: Sequence[Mapping[str, object]], schema: pa.Schema) -> None:
    """Write an analysis table as Parquet with its declared schema (types stay fixed when rows are few).

    Args:
        path: the file.
        rows: one mapping per row.
        schema: the columns and their types.

    """
    write_parquet(path, pa.Table.from_pylist(rows, schema=schema))
