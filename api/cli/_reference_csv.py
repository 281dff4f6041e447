"""The reference implementation's CSV configs (dataset, its OoD siblings, GA) as an ExperimentConfig.

The reference (MO-EvoPruneDeepTL) is started as
`main.py --dataset configDatasetX.csv --configGA configGAFS.csv --run N`. Its files hold one comma-separated
line each and no header:

- dataset: `name, train dir, test dir, folds, height, width, classes`. With folds = 1 the two folders hold
  class sub-folders; with k > 1 they are prefixes that the reference completes with the fold number
  (`…/test/partition` → `…/test/partition0` … `partition{k-1}`).
- OoD: every `…OOD.csv` beside the dataset file except the dataset's own (`configDatasetXOOD.csv`) names one
  out-of-distribution set in the same format; only its name and train dir are used.
- GA: `population, first|second, input size, first layer, second layer, evaluations, neurons|connections,
  layer count, which sparse, both`.

Additions here, all documented in the README: a header line is skipped when its number columns hold no
numbers; blank lines and lines starting with `#` are skipped; an OoD file may list several sets, one a line.
"""

from __future__ import annotations

import csv
import os
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TypedDict, TypeVar

from evoprune.shared.config import ConfigError, ExperimentConfig, parse_config

T = TypeVar("T")

DATASET_COLUMNS = ("name", "train dir", "test dir", "folds", "height", "width", "classes")
GA_COLUMNS = (
    "population",
    "first|second",
    "input size",
    "first layer",
    "second layer",
    "evaluations",
    "neurons|connections",
    "layer count",
    "which sparse",
    "both",
)
# Columns that hold numbers on a data line; a first line with none of them numeric is a header.
DATASET_NUMBER_COLUMNS = (3, 4, 5, 6)
GA_NUMBER_COLUMNS = (0, 2, 3, 5)
NO_FOLDER = "-"
PARTITION = "partition"
OOD_SUFFIX = "OOD.csv"
# The reference reads its OoD files in this order; the order decides which set gets the remainder when the
# OoD samples do not split evenly.
REFERENCE_OOD_ORDER = ("Corales", "Leaves", "PinturasFull", "RPS", "Ojos", "Plantas")
MODES = {"first": "features", "second": "neurons"}
# The reference's --extractor names that differ from keras.applications names.
EXTRACTOR_ALIASES = {"densenet": "densenet121"}
# Features per image of the extractors whose width is known without building them.
FEATURE_WIDTHS = {
    "resnet50": 2048,
    "resnet101": 2048,
    "resnet152": 2048,
    "densenet121": 1024,
    "vgg16": 512,
    "vgg19": 512,
}
PIXELS = "pixels"
RGB_CHANNELS = 3
MAX_REFERENCE_LAYERS = 2


class ReferenceCsvError(ConfigError):
    """A reference CSV that cannot be mapped; each problem names the file, line and column."""

    def __init__(self, problems: list[str], origin: str | None = None) -> None:
        ValueError.__init__(self, "invalid reference CSV config\n" + "\n".join(f"  {p}" for p in problems))
        self.problems = problems
        self.origin = origin


@dataclass(frozen=True)
class CsvLine:
    """One data line of a reference CSV file."""

    path: Path
    number: int
    fields: tuple[str, ...]
    columns: tuple[str, ...]

    def where(self, column: int) -> str:
        """`FILE line L, column C (name)` for a 0-based column index."""
        return f"{self.path} line {self.number}, column {column + 1} ({self.columns[column]})"

    def integer(self, column: int, problems: list[str], minimum: int | None = None) -> int | None:
        """The column as an integer, or None after recording a problem."""
        text = self.fields[column]
        try:
            value = int(text)
        except ValueError:
            problems.append(f"{self.where(column)}: must be an integer, got {text!r}")
            return None
        if minimum is not None and value < minimum:
            problems.append(f"{self.where(column)}: must be at least {minimum}, got {value}")
            return None
        return value


def _is_integer(text: str) -> bool:
    try:
        int(text)
    except ValueError:
        return False
    return True


def read_csv_lines(path: Path, columns: tuple[str, ...], number_columns: tuple[int, ...]) -> list[CsvLine]:
    """Read the data lines of a reference CSV file, each checked to have the expected column count.

    Args:
        path: the file.
        columns: the names of its columns, for messages.
        number_columns: columns that hold numbers; a first line with none numeric is a header and skipped.

    Returns:
        The data lines, in file order.

    Raises:
        ReferenceCsvError: the file cannot be read, or a line has the wrong number of columns.

    """
    try:
        # utf-8-sig: spreadsheet programs often save CSV with a byte-order mark
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) else "not UTF-8 text"
        raise ReferenceCsvError([f"{path}: cannot read the file: {reason}"], str(path)) from None
    lines = []
    for number, raw in enumerate(csv.reader(text.splitlines()), start=1):
        fields = [field.strip() for field in raw]
        while fields and not fields[-1]:
            fields.pop()  # a trailing comma
        if fields and not fields[0].startswith("#"):
            lines.append(CsvLine(path, number, tuple(fields), columns))
    if lines and not any(
        _is_integer(lines[0].fields[index]) for index in number_columns if index < len(lines[0].fields)
    ):
        lines = lines[1:]
    problems = [
        f"{path} line {line.number}: has {len(line.fields)} columns, expected {len(columns)}: "
        + ", ".join(columns)
        for line in lines
        if len(line.fields) != len(columns)
    ]
    if problems:
        raise ReferenceCsvError(problems, str(path))
    return lines


def _single_line(path: Path, columns: tuple[str, ...], number_columns: tuple[int, ...], what: str) -> CsvLine:
    lines = read_csv_lines(path, columns, number_columns)
    if len(lines) != 1:
        found = f"{len(lines)} (lines {', '.join(str(line.number) for line in lines)})" if lines else "none"
        raise ReferenceCsvError([f"{path}: expected one {what} line, found {found}"], str(path))
    return lines[0]


def absolute_folder(text: str) -> Path:
    """A CSV folder as an absolute path; relative ones start at the working directory, as in the reference."""
    return Path(os.path.abspath(os.path.expanduser(text)))


def _file_listing(folder: Path) -> Counter[str]:
    return Counter(
        path.relative_to(folder).as_posix()
        for path in folder.rglob("*")
        if path.is_file() and not any(part.startswith(".") for part in path.relative_to(folder).parts)
    )


def _check_train_partitions(line: CsvLine, train_prefix: str, test_root: Path, folds: int) -> list[str]:
    """Check that train partition i holds the test partitions other than i, as evoprune trains fold i.

    The loader reads only the test partitions; skipped when a folder is missing (the loader reports that).
    """
    train_dirs = [absolute_folder(train_prefix + str(index)) for index in range(folds)]
    test_dirs = [test_root / f"{PARTITION}{index}" for index in range(folds)]
    if not all(folder.is_dir() for folder in (*train_dirs, *test_dirs)):
        return []
    tests = [_file_listing(folder) for folder in test_dirs]
    problems = []
    for index, folder in enumerate(train_dirs):
        expected: Counter[str] = Counter()
        for other, listing in enumerate(tests):
            if other != index:
                expected += listing
        actual = _file_listing(folder)
        if actual != expected:
            missing, extra = expected - actual, actual - expected
            example = next(iter(missing or extra))
            problems.append(
                f"{line.where(1)}: {folder} is not the other test partitions together "
                f"({sum(missing.values())} files missing, {sum(extra.values())} extra, e.g. {example!r}); "
                f"evoprune trains fold {index} on the test partitions other than {index}, so it would not "
                f"reproduce these folds. Write a YAML config with source folder:{test_root} to use the test "
                "partitions as the folds anyway"
            )
    return problems


def _dataset_source(line: CsvLine, folds: int, problems: list[str]) -> str | None:
    train, test = line.fields[1], line.fields[2]
    if folds == 1:
        if test == NO_FOLDER:
            # no test folder: every image trains, and dataset.test_fraction holds a stratified share out
            return f"folder:{absolute_folder(train)}"
        train_dir, test_dir = absolute_folder(train), absolute_folder(test)
        if train_dir.name == "train" and test_dir.name == "test" and train_dir.parent == test_dir.parent:
            return f"folder:{train_dir.parent}"
        problems.append(
            f"{line.where(1)} and column 3 (test dir): evoprune reads a train/test dataset from one folder "
            f"holding train/ and test/, but these are {train!r} and {test!r}; place or symlink them as "
            "ROOT/train and ROOT/test"
        )
        return None
    if test == NO_FOLDER:
        problems.append(f"{line.where(2)}: a dataset with {folds} folds needs its test partitions, not '-'")
        return None
    prefix = absolute_folder(test)
    # The reference appends the fold number to the text as written, so only `…/partition` (no trailing
    # separator) gives the partition0..k-1 folders that the folder loader reads as folds.
    if prefix.name != PARTITION or test.endswith(("/", os.sep)):
        problems.append(
            f"{line.where(2)}: the folds must be folders partition0..partition{folds - 1}, so the test dir "
            f"must end in /{PARTITION} (got {test!r})"
        )
        return None
    if line.fields[1] != NO_FOLDER:
        problems.extend(_check_train_partitions(line, line.fields[1], prefix.parent, folds))
    return f"folder:{prefix.parent}"


def _dataset_line(line: CsvLine) -> DatasetSection:
    """Map a dataset line onto the config's `dataset` section (a raw mapping; the schema checks the rest)."""
    problems: list[str] = []
    folds = line.integer(3, problems, minimum=1)
    height = line.integer(4, problems, minimum=1)
    width = line.integer(5, problems, minimum=1)
    classes = line.integer(6, problems, minimum=2)
    name = line.fields[0]
    if not name or "/" in name or os.sep in name:
        problems.append(f"{line.where(0)}: must be a non-empty name without path separators, got {name!r}")
    if not line.fields[1] or line.fields[1] == NO_FOLDER:
        problems.append(f"{line.where(1)}: the training images are needed, got {line.fields[1]!r}")
    source = _dataset_source(line, folds, problems) if folds is not None and not problems else None
    if problems:
        raise ReferenceCsvError(problems, str(line.path))
    assert height is not None and width is not None and classes is not None  # each None adds a problem
    return {
        "source": source,
        "name": name,
        "image_size": [height, width],
        "num_classes": classes,
        "folds": folds if folds and folds > 1 else None,
    }


def ood_csv_files(dataset_csv: Path) -> list[Path]:
    """The OoD files of a dataset file: its `…OOD.csv` siblings except its own, in the reference's order."""
    own = dataset_csv.stem + OOD_SUFFIX
    candidates = [path for path in dataset_csv.parent.glob("*" + OOD_SUFFIX) if path.name != own]

    def order(path: Path) -> tuple[int, str]:
        stem = path.name.removesuffix(OOD_SUFFIX).removeprefix("configDataset")
        known = REFERENCE_OOD_ORDER.index(stem) if stem in REFERENCE_OOD_ORDER else len(REFERENCE_OOD_ORDER)
        return known, path.name

    return sorted(candidates, key=order)


def _ood_sources(dataset_csv: Path) -> list[dict[str, str]]:
    files = ood_csv_files(dataset_csv)
    if not files:
        raise ReferenceCsvError(
            [
                f"{dataset_csv}: no OoD files beside it; the reference scores robustness on the other "
                f"datasets, read from their configDataset…{OOD_SUFFIX} files in the same folder"
            ],
            str(dataset_csv),
        )
    sources, problems = [], []
    for path in files:
        lines = read_csv_lines(path, DATASET_COLUMNS, DATASET_NUMBER_COLUMNS)
        if not lines:
            problems.append(f"{path}: holds no OoD line")
        for line in lines:
            folder = line.fields[1]
            if not folder or folder == NO_FOLDER:
                problems.append(f"{line.where(1)}: the OoD images' folder is needed, got {folder!r}")
                continue
            sources.append(
                {"source": f"folder:{absolute_folder(folder)}", "name": line.fields[0] or path.stem}
            )
    if problems:
        raise ReferenceCsvError(problems, str(dataset_csv))
    return sources


class DatasetSection(TypedDict):
    """The config's `dataset` section as a dataset line gives it (raw: `parse_config` checks it)."""

    source: str | None
    name: str
    image_size: list[int]  # [height, width]
    num_classes: int
    folds: int | None  # None for a single split


class HeadSection(TypedDict):
    """The config's `head` section as a GA line gives it."""

    mode: str
    layers: list[int | None]  # the second layer's size is None when the line leaves it out
    masked: list[int]
    hidden_bias: bool


class BackboneSection(TypedDict):
    """The config's `backbone` section: the extractor and its weights (none for raw pixels)."""

    name: str
    weights: str | None


class SearchSection(TypedDict):
    """The config's `search` section: one run of the reference's budget, seeded by the run number."""

    population_size: int
    max_evaluations: int
    runs: int
    seed: int


class ReferenceConfigData(TypedDict):
    """A raw config mapped from the reference's CSV files, before `parse_config` validates it."""

    protocol: str
    name: str
    dataset: DatasetSection
    ood: list[dict[str, str]]
    backbone: BackboneSection
    head: HeadSection
    fitness_split: str
    search: SearchSection


@dataclass(frozen=True)
class GaSettings:
    """What a GA line decides: the head, the search budget, and the input width it expects."""

    head: HeadSection
    population_size: int
    max_evaluations: int
    input_size: int


def _choice(line: CsvLine, column: int, allowed: Mapping[str, T], problems: list[str]) -> T | None:
    text = line.fields[column].lower()
    if text not in allowed:
        problems.append(
            f"{line.where(column)}: must be one of {', '.join(allowed)}, got {line.fields[column]!r}"
        )
        return None
    return allowed[text]


def _ga_line(line: CsvLine) -> GaSettings:
    problems: list[str] = []
    population = line.integer(0, problems)
    mode = _choice(line, 1, MODES, problems)
    input_size = line.integer(2, problems, minimum=1)
    first = line.integer(3, problems, minimum=1)
    evaluations = line.integer(5, problems)
    unit = _choice(
        line,
        6,
        {"0": "neurons", "1": "connections", "neurons": "neurons", "connections": "connections"},
        problems,
    )
    if unit == "connections":
        problems.append(
            f"{line.where(6)}: pruning single connections (1) is not supported; evoprune prunes neurons (0): "
            "input features with 'first', hidden units with 'second'"
        )
    count = line.integer(7, problems, minimum=1)
    if count is not None and count > MAX_REFERENCE_LAYERS:
        problems.append(
            f"{line.where(7)}: is {count} but a GA line sizes at most {MAX_REFERENCE_LAYERS} hidden layers "
            "(columns 4 and 5); write a YAML config with head.layers for more"
        )
        count = None
    which = _choice(line, 8, {str(n): n for n in range(1, MAX_REFERENCE_LAYERS + 1)}, problems)
    both = _choice(line, 9, {"0": False, "1": True}, problems)
    # With one layer the second layer's size is ignored (the reference's files put -1 there).
    second = line.integer(4, problems, minimum=1) if count == MAX_REFERENCE_LAYERS else None
    if count is not None and which is not None and which > count:
        problems.append(f"{line.where(8)}: layer {which} is sparse but the head has {count} layer(s)")
    if both and count == 1:
        problems.append(f"{line.where(9)}: both layers sparse needs a layer count of 2")
    if problems:
        raise ReferenceCsvError(problems, str(line.path))
    assert first is not None and input_size is not None and population is not None and evaluations is not None
    assert mode is not None and which is not None  # each None added a problem
    layers: list[int | None] = [first] if count == 1 else [first, second]
    masked = [0, 1] if both else [which - 1]
    head: HeadSection = {"mode": mode, "layers": layers, "masked": masked, "hidden_bias": False}
    return GaSettings(head, population, evaluations, input_size)


def _feature_width(backbone: str, image_size: list[int]) -> int | None:
    if backbone == PIXELS:
        return image_size[0] * image_size[1] * RGB_CHANNELS
    return FEATURE_WIDTHS.get(backbone)


def reference_config_data(
    dataset_csv: str | Path, ga_csv: str | Path, run: int, extractor: str = "resnet50", base_seed: int = 0
) -> ReferenceConfigData:
    """Map the reference's CSV files onto a raw config mapping.

    Args:
        dataset_csv: the dataset file (`configDatasetX.csv`); its OoD siblings are read from the same folder.
        ga_csv: the GA file (`configGAFS.csv`).
        run: the reference's execution number; the run's seed is `base_seed + run` and one run is made, so
            the reference's 10 executions are `--run 0` … `--run 9` (or one config with `search.runs: 10`).
        extractor: the reference's `--extractor` (`resnet50`, `densenet`, `vgg19`), or any backbone name.
        base_seed: added to `run`.

    Returns:
        The mapping, to be checked by `parse_config`.

    Raises:
        ReferenceCsvError: a file is missing or malformed, or asks for something evoprune cannot do; each
            problem names the file, line and column.

    """
    return _map(Path(dataset_csv), Path(ga_csv), run, extractor, base_seed)[0]


def _map(
    dataset_path: Path, ga_path: Path, run: int, extractor: str, base_seed: int
) -> tuple[ReferenceConfigData, CsvLine, CsvLine]:
    dataset_line = _single_line(dataset_path, DATASET_COLUMNS, DATASET_NUMBER_COLUMNS, "dataset")
    dataset = _dataset_line(dataset_line)
    ood = _ood_sources(dataset_path)
    ga_line = _single_line(ga_path, GA_COLUMNS, GA_NUMBER_COLUMNS, "GA")
    ga = _ga_line(ga_line)
    backbone = EXTRACTOR_ALIASES.get(extractor.lower(), extractor.lower())
    width = _feature_width(backbone, dataset["image_size"])
    if width is not None and width != ga.input_size:
        raise ReferenceCsvError(
            [f"{ga_line.where(2)}: is {ga.input_size} but the {backbone} extractor gives {width} features"],
            str(ga_path),
        )
    data: ReferenceConfigData = {
        # the reference's own files ask for the reference's run: its estimator, OoD sample and restore rule
        "protocol": "reference",
        "name": f"{dataset['name']}-run{run}",
        "dataset": dataset,
        "ood": ood,
        "backbone": {"name": backbone, "weights": None if backbone == PIXELS else "imagenet"},
        "head": ga.head,
        "fitness_split": "test",
        "search": {
            "population_size": ga.population_size,
            "max_evaluations": ga.max_evaluations,
            "runs": 1,
            "seed": base_seed + run,
        },
    }
    return data, dataset_line, ga_line


# Where each config field comes from, to name the CSV column when the schema rejects a value.
_FIELD_COLUMNS = {
    "dataset.num_classes": ("dataset", 6),
    "dataset.image_size": ("dataset", 4),
    "dataset.folds": ("dataset", 3),
    "search.population_size": ("ga", 0),
    "search.max_evaluations": ("ga", 5),
    "search": ("ga", 0),
    "head.layers": ("ga", 3),
    "head": ("ga", 8),
}


def load_reference_config(
    dataset_csv: str | Path, ga_csv: str | Path, run: int, extractor: str = "resnet50", base_seed: int = 0
) -> ExperimentConfig:
    """Read the reference's CSV files as a validated config (arguments as `reference_config_data`).

    Returns:
        The frozen config.

    Raises:
        ReferenceCsvError: a file is missing, malformed, or maps to an invalid config; each problem names the
            file, line and column.

    """
    data, dataset_line, ga_line = _map(Path(dataset_csv), Path(ga_csv), run, extractor, base_seed)
    try:
        return parse_config(data, str(dataset_csv))
    except ConfigError as error:
        lines = {"dataset": dataset_line, "ga": ga_line}
        problems = []
        for problem in error.problems:
            field = problem.partition(":")[0]
            prefix = next(
                (key for key in _FIELD_COLUMNS if field == key or field.startswith(key + ".")), None
            )
            if prefix is None:
                problems.append(problem)
            else:
                which, column = _FIELD_COLUMNS[prefix]
                problems.append(f"{lines[which].where(column)}: {problem}")
        raise ReferenceCsvError(problems, str(dataset_csv)) from None
