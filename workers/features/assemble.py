"""The entry point from a config to a FeatureSet: cached features of every source, split into folds."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from evoprune.shared.config import ExperimentConfig
from evoprune.shared.storage import StoragePath
from evoprune.workers.features._ood import choose_ood_indices, sample_ood, seeded_generator
from evoprune.workers.features.datasets import DatasetError
from evoprune.workers.features.feature_cache import (
    FORMAT_VERSION,
    FeatureTable,
    canonical_hash,
    resolve_cache_dir,
    source_features,
)
from evoprune.workers.features.feature_set import FeatureSet, Fold, Split

# Independent random streams drawn from dataset.split_seed, so that changing one use (say the validation
# slice) never shifts another (the test holdout or the OoD draw).
STREAM_TEST = 1
STREAM_VALIDATION = 2
STREAM_FOLDS = 3
STREAM_OOD = 4
STREAM_TEST_OOD = 5
logger = logging.getLogger(__name__)


def stratified_holdout(labels: np.ndarray, fraction: float, seed: Sequence[int]) -> np.ndarray:
    """Choose a seeded, per-class share of the samples.

    Each class with at least two samples gives round(fraction × its size) of them, at least one and never
    all; a class with one sample stays out of the holdout.

    Args:
        labels: (N,) class labels.
        fraction: share of each class to hold out.
        seed: seeds the choice.

    Returns:
        (N,) bool, True for the held-out samples.

    """
    rng = seeded_generator(seed)
    held = np.zeros(len(labels), dtype=bool)
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        if len(members) < 2:
            continue
        count = min(len(members) - 1, max(1, round(fraction * len(members))))
        held[rng.choice(members, size=count, replace=False)] = True
    return held


def stratified_folds(labels: np.ndarray, folds: int, seed: Sequence[int]) -> np.ndarray:
    """Deal the samples of every class round-robin into `folds` folds, in a seeded order.

    Args:
        labels: (N,) class labels.
        folds: the number of folds.
        seed: seeds the order.

    Returns:
        (N,) fold index of every sample; fold sizes differ by at most one per class.

    """
    rng = seeded_generator(seed)
    assignment = np.empty(len(labels), dtype=np.int64)
    offset = 0
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        # Continuing the deal where the previous class stopped keeps the folds' total sizes balanced too.
        assignment[members] = (offset + np.arange(len(members))) % folds
        offset += len(members)
    return assignment


@dataclass(frozen=True)
class _Round:
    train: np.ndarray
    evaluation: np.ndarray
    test: np.ndarray | None


def _kfold_rounds(table: FeatureTable, config: ExperimentConfig) -> list[_Round]:
    dataset = config.dataset
    if table.folds is not None:
        fold_ids = table.folds
        count = len(np.unique(fold_ids))
        if np.unique(fold_ids).tolist() != list(range(count)):
            raise DatasetError(
                f"{dataset.source}: folds must be numbered 0..k-1, found {np.unique(fold_ids)}"
            )
        if dataset.folds is not None and dataset.folds != count:
            raise DatasetError(f"{dataset.source}: dataset.folds is {dataset.folds} but the data has {count}")
    else:
        assert dataset.folds is not None
        count = dataset.folds
        fold_ids = stratified_folds(table.labels, count, [dataset.split_seed, STREAM_FOLDS])
    rounds = []
    for index in range(count):
        held, rest = np.flatnonzero(fold_ids == index), np.flatnonzero(fold_ids != index)
        if config.fitness_split == "validation":
            slice_ = stratified_holdout(
                table.labels[rest],
                dataset.validation_fraction,
                [dataset.split_seed, STREAM_VALIDATION, index],
            )
            rounds.append(_Round(rest[~slice_], rest[slice_], held))
        else:
            rounds.append(_Round(rest, held, None))
    return rounds


def _rounds(table: FeatureTable, config: ExperimentConfig) -> list[_Round]:
    """Decide which rows train and which evaluate, per fold."""
    dataset = config.dataset
    if table.folds is not None or dataset.folds is not None:
        return _kfold_rounds(table, config)
    train = np.flatnonzero(table.splits == "train")
    validation = np.flatnonzero(table.splits == "validation")
    test = np.flatnonzero(table.splits == "test")
    if len(test) == 0:
        carved = stratified_holdout(
            table.labels[train], dataset.test_fraction, [dataset.split_seed, STREAM_TEST]
        )
        train, test = train[~carved], train[carved]
    if config.fitness_split == "validation":
        if len(validation) == 0:
            carved = stratified_holdout(
                table.labels[train], dataset.validation_fraction, [dataset.split_seed, STREAM_VALIDATION, 0]
            )
            train, validation = train[~carved], train[carved]
        return [_Round(train, validation, test)]
    # The fitness split is test: a source's own validation rows are more training data.
    return [_Round(np.sort(np.concatenate([train, validation])), test, None)]


def _split(table: FeatureTable, rows: np.ndarray, role: str) -> Split:
    if len(rows) == 0:
        raise DatasetError(f"{table.key[:12]}: the {role} split is empty")
    features = np.ascontiguousarray(table.features[rows], dtype=np.float32)
    return Split(features, table.labels[rows].astype(np.int64))


def _num_classes(table: FeatureTable, config: ExperimentConfig) -> int:
    detected = table.num_classes
    wanted = config.dataset.num_classes
    if wanted is None:
        return detected
    if table.class_names and wanted != detected:
        raise DatasetError(
            f"dataset.num_classes is {wanted} but {config.dataset.source} has {detected} classes "
            f"({', '.join(table.class_names[:8])}{', …' if detected > 8 else ''})"
        )
    if wanted < detected:
        raise DatasetError(
            f"dataset.num_classes is {wanted} but {config.dataset.source} has labels up to {detected - 1}"
        )
    return wanted


def _load_tables(
    config: ExperimentConfig, progress: bool
) -> tuple[FeatureTable, list[FeatureTable], list[StoragePath]]:
    cache_dir = resolve_cache_dir(config.cache_dir)
    image_size = config.dataset.image_size
    table, path = source_features(
        config.dataset.source,
        backbone=config.backbone,
        image_size=image_size,
        cache_dir=cache_dir,
        folds=config.dataset.folds,
        progress=progress,
        resize=config.dataset.resize,
    )
    width = table.features.shape[1]
    ood_tables, paths = [], [path]
    for ood in config.ood:
        ood_table, ood_path = source_features(
            ood.source,
            backbone=config.backbone,
            image_size=image_size,
            cache_dir=cache_dir,
            ood=True,
            progress=progress,
            # OoD images are resized to the dataset's size, so by the dataset's interpolation too
            resize=config.dataset.resize,
        )
        if ood_table.features.shape[1] != width:
            raise DatasetError(
                f"OoD source {ood.source} gives {ood_table.features.shape[1]} features per sample but the "
                f"dataset gives {width}; set dataset.image_size so that every source has the same size"
            )
        ood_tables.append(ood_table)
        paths.append(ood_path)
    return table, ood_tables, paths


def extract_features(config: ExperimentConfig, progress: bool = True) -> list[StoragePath]:
    """Build (or find) the cached features of the dataset and of every OoD source.

    Args:
        config: the experiment.
        progress: show a progress bar on stderr while extracting.

    Returns:
        The feature files: the dataset's first, then one per OoD source in config order.

    """
    return _load_tables(config, progress)[2]


def load_feature_set(config: ExperimentConfig, *, progress: bool = True) -> FeatureSet:
    """Load the features an experiment trains and scores on, extracting and caching them on first use.

    Args:
        config: the experiment: its dataset, OoD sources, backbone, fitness split and split parameters.
        progress: show a progress bar on stderr while extracting.

    Returns:
        One fold for an ordinary dataset, k for a k-fold one. Each fold's `ood` holds as many OoD samples
        as its evaluation split (fewer if the OoD pool is smaller); with `fitness_split: validation` the
        folds also carry the test split and its own OoD draw. The key addresses all of it by content.

    Raises:
        DatasetError: unreadable data, a class count that disagrees with the config, or mismatched sources.

    """
    table, ood_tables, _ = _load_tables(config, progress)
    num_classes = _num_classes(table, config)
    seed = config.dataset.split_seed
    pools = [ood_table.features for ood_table in ood_tables]
    pool_labels = [ood_table.labels for ood_table in ood_tables]

    sampling = config.robustness.ood_sampling
    rounds = _rounds(table, config)

    def draw(total: int, stream: int, index: int) -> np.ndarray:
        if not pools:
            return np.empty((0, table.features.shape[1]), np.float32)
        if sampling == "first_n":
            # the reference's one OoD set for every fold: sized by the first fold's split, so a fold whose
            # split is a sample or two larger or smaller scores the same OoD images
            first = rounds[0].test if stream == STREAM_TEST_OOD else rounds[0].evaluation
            total = len(first) if first is not None else total
        return sample_ood(pools, pool_labels, total, [seed, stream, index], sampling)

    folds = []
    for index, round_ in enumerate(rounds):
        evaluation = _split(table, round_.evaluation, config.fitness_split)
        test = _split(table, round_.test, "test") if round_.test is not None else None
        folds.append(
            Fold(
                train=_split(table, round_.train, "train"),
                evaluation=evaluation,
                ood=draw(len(evaluation), STREAM_OOD, index),
                test=test,
                test_ood=draw(len(test), STREAM_TEST_OOD, index) if test is not None else None,
            )
        )
    dataset = config.dataset
    key = canonical_hash(
        {
            "format": FORMAT_VERSION,
            "dataset": table.key,
            "ood": [ood_table.key for ood_table in ood_tables],
            "fitness_split": config.fitness_split,
            "test_fraction": dataset.test_fraction,
            "validation_fraction": dataset.validation_fraction,
            "split_seed": seed,
            "folds": dataset.folds,
            "num_classes": num_classes,
            # named only when not the default, so feature sets (and the fitness keys on them) made before
            # the option existed keep their keys
            **({"ood_sampling": sampling} if sampling != "random" else {}),
        }
    )
    logger.info(
        "feature set %s: %d classes, %d features, %d fold(s), %d train / %d evaluation samples",
        key[:12],
        num_classes,
        table.features.shape[1],
        len(folds),
        len(folds[0].train),
        len(folds[0].evaluation),
    )
    return FeatureSet(key=key, num_classes=num_classes, folds=tuple(folds))


def fitness_rows(config: ExperimentConfig, fold: int, *, progress: bool = False) -> np.ndarray:
    """Which samples of the dataset one fold is scored on: its fitness split, as the search saw it.

    Args:
        config: the experiment.
        fold: the fold (0 for a dataset without folds).
        progress: show a progress bar if the features must be extracted again.

    Returns:
        Row numbers in the dataset source's own order (the order its images are read and its features
        cached), in the order of the fold's evaluation split.

    Raises:
        DatasetError: unreadable data, or no such fold.

    """
    table, _ = source_features(
        config.dataset.source,
        backbone=config.backbone,
        image_size=config.dataset.image_size,
        cache_dir=resolve_cache_dir(config.cache_dir),
        folds=config.dataset.folds,
        progress=progress,
        resize=config.dataset.resize,
    )
    rounds = _rounds(table, config)
    if not 0 <= fold < len(rounds):
        raise DatasetError(f"{config.dataset.source} has {len(rounds)} fold(s); there is no fold {fold}")
    return rounds[fold].evaluation


def training_rows(config: ExperimentConfig, fold: int) -> np.ndarray:
    """Which samples of the dataset one fold trains on, as row numbers in the source's own order.

    Args:
        config: the experiment.
        fold: the fold (0 for a dataset without folds).

    Returns:
        The rows, in the order of the fold's training split.

    Raises:
        DatasetError: unreadable data, or no such fold.

    """
    table, _, _ = _load_tables(config, progress=False)
    rounds = _rounds(table, config)
    if not 0 <= fold < len(rounds):
        raise DatasetError(f"{config.dataset.source} has {len(rounds)} fold(s); there is no fold {fold}")
    return rounds[fold].train


def ood_rows(config: ExperimentConfig, fold: int) -> list[np.ndarray]:
    """Which samples of each OoD source one fold's fitness split is scored against, as load_feature_set draws.

    Args:
        config: the experiment.
        fold: the fold (0 for a dataset without folds).

    Returns:
        Per OoD source (config order), row numbers in its own order; the fold's `ood` features are those
        rows of each source's features, concatenated.

    Raises:
        DatasetError: unreadable data, or no such fold.

    """
    table, ood_tables, _ = _load_tables(config, progress=False)
    rounds = _rounds(table, config)
    if not 0 <= fold < len(rounds):
        raise DatasetError(f"{config.dataset.source} has {len(rounds)} fold(s); there is no fold {fold}")
    if not ood_tables:
        return []
    sampling = config.robustness.ood_sampling
    # as load_feature_set's draw: under first_n every fold scores the first fold's OoD set
    total = len(rounds[0].evaluation if sampling == "first_n" else rounds[fold].evaluation)
    labels = [ood_table.labels for ood_table in ood_tables]
    return choose_ood_indices(labels, total, [config.dataset.split_seed, STREAM_OOD, fold], sampling)
