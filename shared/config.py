"""The experiment config: frozen pydantic models loaded from YAML, validated on load."""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

SOURCE_KINDS = ("sklearn", "tfds", "folder", "features")
# `${NAME}` or `${NAME:-default}` inside a source string of a config file (see `expand_variables`).
_VARIABLE_REFERENCE = re.compile(r"\$\{([^}]*)\}")
_VARIABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


# experiments need OoD samples for the AUROC objective; the config itself allows none because benchmarks
# and tests hand over ready-made feature sets that carry their own
NO_OOD_MESSAGE = (
    "ood: no out-of-distribution source is configured, and the AUROC objective needs at least one "
    "(for example `ood: [{source: sklearn:sample_images}]`)"
)
# Part of every fitness-cache key: raised whenever the evaluator's rules change a mask's objectives for an
# unchanged config, so that a shared cache never mixes results of two rules. 2: early stopping compares in
# float32 as on the device, and training without early stopping keeps the last epoch's weights. 3: products
# and batch sums no longer depend on the group's size (XLA:CPU's YNNPACK fusions off, two-row batch sums),
# which moves some objectives by a last bit.
EVALUATOR_REVISION = 3


class ConfigError(ValueError):
    """A config that cannot be used; `problems` holds one field-named message per problem."""

    def __init__(
        self, problems: list[str], origin: str | None = None, summary: str = "invalid experiment config"
    ) -> None:
        self.problems = problems
        self.origin = origin
        where = f"{origin}: " if origin else ""
        # a problem may span lines (a YAML error shows the offending line): every line stays indented
        details = "\n".join(
            "  " + line for problem in problems if problem != summary for line in problem.splitlines()
        )
        super().__init__(where + summary + ("\n" + details if details else ""))


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def _check_source(value: str) -> str:
    kind, separator, rest = value.partition(":")
    if not separator or kind not in SOURCE_KINDS or not rest:
        raise ValueError(
            f"must look like KIND:NAME with KIND one of {', '.join(SOURCE_KINDS)} (got {value!r})"
        )
    return value


class OodSource(_Frozen):
    """One out-of-distribution source; its images go through the same backbone and image size."""

    source: str
    name: str | None = None

    @field_validator("source")
    @classmethod
    def _valid_source(cls, value: str) -> str:
        return _check_source(value)

    @property
    def label(self) -> str:
        """A short name for reports."""
        return self.name or self.source.partition(":")[2]


class DatasetConfig(_Frozen):
    """Where the in-distribution images (or features) come from and how they are split."""

    source: str = "sklearn:digits"
    name: str | None = None
    image_size: tuple[int, int] | None = Field(
        default=None, description="(height, width) the images are resized to; None keeps the source size"
    )
    num_classes: int | None = Field(default=None, gt=1)
    folds: int | None = Field(
        default=None,
        ge=2,
        description="k-fold datasets (folder partition0..k-1): accuracy averaged over folds",
    )
    test_fraction: float = Field(
        default=0.2, gt=0.0, lt=1.0, description="held-out share for sources without a test split"
    )
    validation_fraction: float = Field(
        default=0.1,
        gt=0.0,
        lt=1.0,
        description="stratified slice of train used when fitness_split=validation",
    )
    split_seed: int = 0
    resize: Literal["bilinear", "nearest"] = Field(
        default="bilinear",
        description=(
            "interpolation of every resize on the way to the backbone (dataset, OoD sources and the "
            "backbone's own input size): bilinear, or nearest after RGB conversion as Keras 2's image "
            "loader did (the reference); part of the feature-cache key"
        ),
    )

    @field_validator("source")
    @classmethod
    def _valid_source(cls, value: str) -> str:
        return _check_source(value)

    @field_validator("image_size")
    @classmethod
    def _positive_size(cls, value: tuple[int, int] | None) -> tuple[int, int] | None:
        if value is not None and (value[0] <= 0 or value[1] <= 0):
            raise ValueError("height and width must be > 0")
        return value

    @property
    def label(self) -> str:
        """A short name for reports."""
        return self.name or self.source.partition(":")[2]


class BackboneConfig(_Frozen):
    """The frozen feature extractor."""

    name: str = Field(default="resnet50", description="a keras.applications model name, or 'pixels'")
    weights: str | None = Field(default="imagenet", description="'imagenet', a weights file path, or null")
    batch_size: int = Field(default=32, gt=0, description="images per extraction batch")


class HeadConfig(_Frozen):
    """The dense head on top of the features and which of its layers the mask prunes."""

    mode: Literal["features", "neurons"] = Field(
        default="features",
        description="features: the mask selects a masked layer's inputs; neurons: its units",
    )
    layers: tuple[int, ...] = Field(default=(512,), min_length=1, max_length=4)
    masked: tuple[int, ...] = Field(default=(0,), min_length=1)
    hidden_bias: bool = False

    @field_validator("layers")
    @classmethod
    def _positive_units(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if any(units <= 0 for units in value):
            raise ValueError("every layer needs > 0 units")
        return value

    @model_validator(mode="after")
    def _masked_layers_exist(self) -> HeadConfig:
        if len(set(self.masked)) != len(self.masked):
            raise ValueError("masked: a layer is listed twice")
        for index in self.masked:
            if not 0 <= index < len(self.layers):
                raise ValueError(f"masked: layer {index} does not exist (the head has {len(self.layers)})")
        if tuple(sorted(self.masked)) != self.masked:
            raise ValueError("masked: list the layers in increasing order")
        return self

    def mask_segments(self, input_dim: int) -> list[tuple[int, int]]:
        """The (layer, length) pieces that make up one mask, in order.

        Args:
            input_dim: the number of features the head receives.

        Returns:
            One (layer index, segment length) pair per masked layer.

        """
        widths = (input_dim, *self.layers)
        segments = []
        for layer in self.masked:
            length = widths[layer] if self.mode == "features" else self.layers[layer]
            segments.append((layer, length))
        return segments

    def mask_length(self, input_dim: int) -> int:
        """Total bits in a mask for a head on `input_dim` features."""
        return sum(length for _, length in self.mask_segments(input_dim))

    def mask_length_problem(
        self, limit: int, input_dim: int | None = None, limit_name: str = "the limit"
    ) -> str | None:
        """The mask-length limit: what is wrong when a mask would be longer than `limit` bits.

        Args:
            limit: the most bits a mask may have.
            input_dim: the number of features; None checks the part known before the features are
                loaded (a lower bound, so a config can be refused while its sender is listening).
            limit_name: where the limit is set, for the message.

        Returns:
            A message naming the field, or None when the mask fits.

        """
        length = self.mask_length(input_dim if input_dim is not None else 0)
        if length <= limit:
            return None
        at_least = "" if input_dim is not None else "at least "
        return f"head.layers: the mask would have {at_least}{length} bits, more than {limit_name} ({limit})"


class EarlyStoppingConfig(_Frozen):
    """Early stopping on the training loss, as Keras's EarlyStopping(monitor='loss')."""

    enabled: bool = True
    min_delta: float = Field(default=1e-5, ge=0.0)
    patience: int = Field(default=10, ge=0)
    restore_best_weights: Literal["always", "when_stopped", "never"] = Field(
        default="always",
        description=(
            "which weights a model keeps: the best epoch's always (Keras 3), only when early stopping fired "
            "(Keras 2, the reference), or the last epoch's"
        ),
    )
    decision: Literal["float32", "keras2_float64"] = Field(
        default="float32",
        description=(
            "how the epoch loss is accumulated and compared: float32: batch loss sums and the "
            "`loss + min_delta < best` test in float32 (the same bits on host and device); keras2_float64: "
            "Keras 2's epoch mean (each float32 batch mean times its batch size, summed and divided in "
            "float64) and its float64 test (the reference)"
        ),
    )

    @field_validator("restore_best_weights", mode="before")
    @classmethod
    def _boolean_restore(cls, value: object) -> object:
        # configs written before the three-way choice said true/false: Keras 3's and Keras's default off
        if isinstance(value, bool):
            return "always" if value else "never"
        return value


class TrainingConfig(_Frozen):
    """How every masked head is trained (the same protocol for every mask)."""

    learning_rate: float = Field(default=1e-3, gt=0.0)
    momentum: float = Field(default=0.9, ge=0.0, lt=1.0)
    nesterov: bool = True
    decay: float = Field(default=1e-6, ge=0.0, description="inverse-time decay per step")
    batch_size: int = Field(default=32, gt=0)
    max_epochs: int = Field(default=600, gt=0)
    early_stopping: EarlyStoppingConfig = EarlyStoppingConfig()
    seed: int = Field(
        default=0, description="evaluation seed: initial weights and shuffle order, same for every mask"
    )
    loss: Literal["exact", "keras2_clipped"] = Field(
        default="exact",
        description=(
            "the training loss: exact: cross-entropy from the log-softmax; keras2_clipped: Keras 2's "
            "cross-entropy on softmax probabilities clipped to [1e-7, 1 - 1e-7], whose gradient is zero for "
            "a sample whose true-class probability lies outside the clip (the reference)"
        ),
    )
    epochs_per_call: int | None = Field(
        default=None,
        ge=0,
        description=(
            "epochs trained per compiled call, early stopping included (unit: epochs); None or 0 = all "
            "max_epochs in one call, 1 = one epoch per call with early stopping decided on the host (the "
            "reference path). Results are identical for every value; it only trades host round trips "
            "against how soon stopped models leave the batch. Not part of the protocol fingerprint"
        ),
    )


class RobustnessConfig(_Frozen):
    """ODIN-style OoD scoring: the temperature, the AUROC estimator and which OoD samples are scored."""

    temperature: float = Field(default=1000.0, gt=0.0)
    auroc_estimator: Literal["exact", "reference"] = Field(
        default="exact",
        description=(
            "exact: the rank statistic, ties counted half (equals sklearn's roc_auc_score); reference: the "
            "reference implementation's 100 in-distribution-quantile thresholds and trapezoid rule"
        ),
    )
    ood_sampling: Literal["random", "first_n"] = Field(
        default="random",
        description=(
            "random: a seeded draw per class, per fold; first_n: the first images of each class of each "
            "OoD source, one set shared by every fold (the reference)"
        ),
    )
    score_precision: Literal["float64", "float32"] = Field(
        default="float64",
        description=(
            "arithmetic of the ODIN scores: float64 (fewer ties at T = 1000), or float32 in the reference's "
            "order of operations (softmax of logits / T, then the maximum)"
        ),
    )


class ScreeningConfig(_Frozen):
    """Opt-in multi-fidelity screening: offspring train a short budget first and hopeless ones stop there.

    The rule (shared/screening.py): after `budget` × max_epochs epochs a new mask's objectives at that point
    (the protocol with max_epochs = the budget) are ranked by non-dominated sorting among the same
    low-fidelity objectives of the population it was bred from; beyond rank `max_rank` it is hopeless, and
    with `min_gain` > 0 so is a mask that would add less than that fraction to the hypervolume of their
    front. Every other mask trains on, bitwise as if never paused, to its full-protocol objectives.
    """

    enabled: bool = False
    budget: float = Field(
        default=0.1,
        gt=0.0,
        lt=1.0,
        description="the screening budget as a fraction of training.max_epochs (rounded, at least 1 epoch)",
    )
    max_rank: int = Field(
        default=0,
        ge=0,
        description=(
            "hopeless beyond this 0-based non-domination rank among the parents' low-fidelity objectives "
            "(0: a mask must be non-dominated there to train on)"
        ),
    )
    margin: float = Field(
        default=0.0,
        ge=0.0,
        le=1.0,
        description=(
            "optimism added to a screened mask's low-fidelity accuracy and AUROC before it is ranked "
            "(larger: fewer masks screened out)"
        ),
    )
    # 0.002: of the rules measured (BENCHMARKS.md), the one that kept the full protocol's hypervolume on both
    # problems while saving the most epochs
    min_gain: float = Field(
        default=0.002,
        ge=0.0,
        le=1.0,
        description=(
            "also hopeless when the mask would add less than this fraction to the hypervolume of its "
            "parents' low-fidelity front (0: ranks alone decide; larger: more masks screened out)"
        ),
    )


class ConstraintsConfig(_Frozen):
    """Constraints the search keeps to, by constrained domination (Deb's rule); unset ones do not apply.

    A mask that breaks one is infeasible: every feasible mask beats it, and of two infeasible masks the one
    with the smaller total violation wins. Each violation is normalised to a fraction of its full range so
    that they add up: a fraction's by itself, a head budget's by the unpruned head's count. The objectives
    are unchanged, so constraints are part of the experiment's identity but not of the fitness-cache key.
    """

    max_active_fraction: float | None = Field(
        default=None, gt=0.0, le=1.0, description="the largest fraction of active mask bits allowed"
    )
    min_accuracy: float | None = Field(
        default=None, ge=0.0, le=1.0, description="the lowest accuracy on the fitness split allowed"
    )
    min_auroc: float | None = Field(
        default=None, ge=0.0, le=1.0, description="the lowest OoD AUROC on the fitness split allowed"
    )
    max_head_parameters: int | None = Field(
        default=None,
        gt=0,
        description=(
            "the most parameters (kernel weights and biases) the pruned head may keep, counted as "
            "`evoprune export` counts them"
        ),
    )
    max_head_flops: int | None = Field(
        default=None,
        gt=0,
        description="the most FLOPs per image the pruned head may take (2 per kernel weight, 1 per bias)",
    )

    @property
    def active(self) -> bool:
        """Whether any constraint is set."""
        return any(getattr(self, name) is not None for name in type(self).model_fields)

    @property
    def on_head_size(self) -> bool:
        """Whether a budget on the pruned head's size is set (it needs the head's layout to check)."""
        return self.max_head_parameters is not None or self.max_head_flops is not None


class SearchConfig(_Frozen):
    """The NSGA-II search."""

    population_size: int = Field(default=30, ge=2)
    max_evaluations: int = Field(default=200, gt=0)
    offspring_per_step: int = Field(default=2, ge=1)
    asynchronous: bool = False
    crossover_probability: float = Field(default=1.0, ge=0.0, le=1.0)
    crossover_swap_probability: float = Field(default=0.5, ge=0.0, le=1.0)
    mutation_probability: float | None = Field(
        default=None, gt=0.0, le=1.0, description="per bit; None = 1/L"
    )
    runs: int = Field(default=1, ge=1)
    seed: int = 0
    bookkeeping: Literal["deap", "jmetalpy"] = Field(
        default="deap",
        description=(
            "NSGA-II's bookkeeping: deap: crowding distances recomputed on the survivors, ranked first "
            "tournament, the population front keeps distinct masks with equal objectives; jmetalpy: crowding "
            "distances kept from the untruncated join, a uniform first tournament, the population front "
            "de-duplicated by objective vector (jMetalPy 1.5.7, the reference)"
        ),
    )
    screening: ScreeningConfig = ScreeningConfig()
    constraints: ConstraintsConfig = ConstraintsConfig()

    @model_validator(mode="after")
    def _budget_fits(self) -> SearchConfig:
        if self.population_size > self.max_evaluations:
            raise ValueError(
                f"population_size ({self.population_size}) is larger than max_evaluations "
                f"({self.max_evaluations}): the initial population alone would exceed the budget"
            )
        if self.offspring_per_step > self.population_size:
            raise ValueError("offspring_per_step cannot exceed population_size")
        return self


# What `protocol: reference` selects: every point where this project's default differs from the reference
# implementation (docs/PROTOCOL.md tables them with their measured effect). Paths are (section, ..., field).
REFERENCE_PROTOCOL: dict[tuple[str, ...], Any] = {
    ("robustness", "auroc_estimator"): "reference",
    ("robustness", "ood_sampling"): "first_n",
    ("training", "early_stopping", "restore_best_weights"): "when_stopped",
    ("training", "early_stopping", "decision"): "keras2_float64",
    ("training", "loss"): "keras2_clipped",
    ("robustness", "score_precision"): "float32",
    ("dataset", "resize"): "nearest",
    ("search", "bookkeeping"): "jmetalpy",
}


def _explicit(section: Any) -> Any:
    """A section as a mapping of the fields its author set (a model keeps only those it was given)."""
    if isinstance(section, BaseModel):
        return {name: _explicit(getattr(section, name)) for name in section.model_fields_set}
    return section


def _with_preset(data: dict[str, Any], preset: dict[tuple[str, ...], Any]) -> dict[str, Any]:
    """`data` with each preset field filled in where the config does not set it; set fields are kept."""
    resolved = dict(data)
    for path, value in preset.items():
        level = resolved
        for key in path[:-1]:
            section = _explicit(level.get(key, {}))
            if not isinstance(section, dict):
                break  # not a mapping: left for validation to report by name
            level[key] = section = dict(section)
            level = section
        else:
            level.setdefault(path[-1], value)
    return resolved


def _without_defaults(dump: dict[str, Any], defaults: dict[tuple[str, ...], Any]) -> dict[str, Any]:
    """`dump` less the fields of `defaults` whose value is the default (nested paths allowed)."""
    pruned = json.loads(json.dumps(dump))
    for path, value in defaults.items():
        level = pruned
        for key in path[:-1]:
            level = level.get(key, {})
        if path[-1] in level and level[path[-1]] == value:
            del level[path[-1]]
    return pruned


# Every field added after results directories and fitness caches existed, with its default: a directory's
# identity (`stable_dump`) and the fitness fingerprint leave such a field out while it has its default, so
# what was written before the field existed still resumes, and still hits, as the same experiment.
ADDED_FIELD_DEFAULTS: dict[tuple[str, ...], Any] = {
    ("dataset", "resize"): "bilinear",
    ("training", "loss"): "exact",
    ("training", "early_stopping", "decision"): "float32",
    ("robustness", "score_precision"): "float64",
    ("search", "bookkeeping"): "deap",
    ("search", "constraints"): ConstraintsConfig().model_dump(mode="json"),
}


# MLflow's own variables: where its client reports when the config names no server, and to which experiment
MLFLOW_URI_VARIABLE = "MLFLOW_TRACKING_URI"
MLFLOW_EXPERIMENT_VARIABLE = "MLFLOW_EXPERIMENT_NAME"
# the URI schemes whose store is a path on the machine that runs the experiment
_LOCAL_STORE_SCHEMES = ("file", "sqlite")
# URIs without a scheme that MLflow reads as a hosted server rather than a folder
_MLFLOW_NAMED_SERVERS = ("databricks", "databricks-uc")


class TrackingConfig(_Frozen):
    """Where an experiment is reported besides its results directory: an MLflow tracking server (optional).

    Which server: `mlflow_uri` when set, else MLflow's own MLFLOW_TRACKING_URI; the config wins, as
    `mlflow.set_tracking_uri()` wins over the variable in MLflow itself. Tracking never changes a result,
    so the section is no part of the experiment's identity (its fingerprint).
    """

    enabled: bool = Field(default=True, description="false: never track, even with MLFLOW_TRACKING_URI set")
    mlflow_uri: str | None = Field(
        default=None,
        description=(
            "an MLflow tracking URI (http(s)://HOST:PORT, databricks, sqlite:///PATH, a folder); "
            "None: MLFLOW_TRACKING_URI when set, else no tracking"
        ),
    )
    mlflow_experiment: str | None = Field(
        default=None,
        min_length=1,
        max_length=500,
        description="the MLflow experiment; None: MLFLOW_EXPERIMENT_NAME when set, else the config's name",
    )

    @field_validator("mlflow_uri")
    @classmethod
    def _uri_without_secrets(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not value.strip() or any(character.isspace() for character in value):
            raise ValueError("must be a URI without spaces (null: tracking only with MLFLOW_TRACKING_URI)")
        _, separator, rest = value.partition("://")
        authority = rest.split("/", 1)[0] if separator else ""
        if ":" in authority.rpartition("@")[0]:
            # config.yaml and the service's records keep the URI: a password there would be written down
            raise ValueError(
                "holds a password; give credentials in MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD "
                "(or MLFLOW_TRACKING_TOKEN) instead"
            )
        return value

    def uri(self, environ: Mapping[str, str]) -> str | None:
        """The tracking URI experiments report to, or None when they are not tracked.

        Args:
            environ: the environment (MLFLOW_TRACKING_URI).

        Returns:
            `mlflow_uri`, else MLFLOW_TRACKING_URI when set and not empty; None when disabled.

        """
        if not self.enabled:
            return None
        return self.mlflow_uri or environ.get(MLFLOW_URI_VARIABLE) or None

    def experiment_name(self, default: str, environ: Mapping[str, str]) -> str:
        """The MLflow experiment the runs go to: the config's choice, MLflow's variable, else `default`."""
        return self.mlflow_experiment or environ.get(MLFLOW_EXPERIMENT_VARIABLE) or default

    def local_store_path(self) -> str | None:
        """The path on this machine that `mlflow_uri` names (a folder or an SQLite file), else None."""
        if self.mlflow_uri is None:
            return None
        scheme, separator, rest = self.mlflow_uri.partition(":")
        if not separator or len(scheme) == 1:  # no scheme, or a Windows drive letter
            return None if self.mlflow_uri in _MLFLOW_NAMED_SERVERS else self.mlflow_uri
        scheme = scheme.lower()
        if scheme not in _LOCAL_STORE_SCHEMES:
            return None
        if scheme == "sqlite":
            # SQLAlchemy's form: sqlite:///relative.db, sqlite:////absolute.db; sqlite:// alone is in memory
            return rest.removeprefix("///") or None
        # file:///p and file://host/p name /p
        if rest.startswith("//"):
            rest = rest[2:]
            rest = rest[rest.find("/") :] if "/" in rest else "/"
        return rest


class ExperimentConfig(_Frozen):
    """One experiment: data, backbone, head, training protocol, robustness and search."""

    protocol: Literal["default", "reference"] = Field(
        default="default",
        description=(
            "reference: every reference-implementation behaviour (resize, AUROC estimator, ODIN score "
            "precision, OoD sampling, best-weight restore, stopping decision, clipped loss, NSGA-II "
            "bookkeeping) for the fields the config leaves unset; fields set explicitly keep their value"
        ),
    )
    name: str = "experiment"
    dataset: DatasetConfig = DatasetConfig()
    ood: tuple[OodSource, ...] = ()
    backbone: BackboneConfig = BackboneConfig()
    head: HeadConfig = HeadConfig()
    training: TrainingConfig = TrainingConfig()
    robustness: RobustnessConfig = RobustnessConfig()
    fitness_split: Literal["test", "validation"] = "test"
    search: SearchConfig = SearchConfig()
    cache_dir: str | None = Field(default=None, description="feature cache folder; None = ~/.cache/evoprune")
    tracking: TrackingConfig = TrackingConfig()

    @model_validator(mode="before")
    @classmethod
    def _apply_protocol_preset(cls, data: Any) -> Any:
        # explicit fields win over the preset, so one point can be studied against the reference on its own
        if isinstance(data, dict) and data.get("protocol") == "reference":
            return _with_preset(data, REFERENCE_PROTOCOL)
        return data

    def protocol_fingerprint(self) -> str:
        """A hash of everything besides the features that decides a mask's fitness."""
        relevant = {
            "evaluator_revision": EVALUATOR_REVISION,
            "head": self.head.model_dump(mode="json"),
            # how many epochs a compiled call runs changes no result, so it must not split the fitness cache
            "training": self.training.model_dump(mode="json", exclude={"epochs_per_call"}),
            "robustness": self.robustness.model_dump(mode="json"),
            "fitness_split": self.fitness_split,
            "validation": [self.dataset.validation_fraction, self.dataset.split_seed],
        }
        # fields added since caches existed are named only off their defaults, so older keys still hold
        relevant = _without_defaults(relevant, ADDED_FIELD_DEFAULTS)
        text = json.dumps(relevant, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:32]

    def stable_dump(self) -> dict[str, Any]:
        """The resolved config as JSON data, less the added fields that still have their defaults.

        Returns:
            What identifies the experiment: equal for a directory written before those fields existed.
        """
        # where the experiment is reported changes none of its results: tracking is left out
        return _without_defaults(self.model_dump(mode="json", exclude={"tracking"}), ADDED_FIELD_DEFAULTS)

    def with_search_overrides(
        self,
        *,
        runs: int | None = None,
        max_evaluations: int | None = None,
        seed: int | None = None,
        origin: str | None = None,
    ) -> ExperimentConfig:
        """A copy with some search fields replaced, as `run --runs/--max-evaluations/--seed` ask.

        Only the search section is validated again (its bounds, and that the budget fits the population):
        the rest of the config is already valid and is shared with the copy as it is.

        Args:
            runs: independent runs; None keeps the config's.
            max_evaluations: evaluations per run; None keeps the config's.
            seed: the first run's seed; None keeps the config's.
            origin: where the overrides came from, for messages.

        Returns:
            The overridden config (this one when every override is None).

        Raises:
            ConfigError: an override is out of bounds; each problem names its `search.` field.

        """
        given = {
            name: value
            for name, value in (("runs", runs), ("max_evaluations", max_evaluations), ("seed", seed))
            if value is not None
        }
        if not given:
            return self
        try:
            # the section's own values, typed (screening stays a model), so only its validators run
            search = SearchConfig(**(dict(self.search) | given))
        except ValidationError as error:
            raise ConfigError(_format_errors(error, within="search"), origin) from None
        return self.model_copy(update={"search": search})

    @classmethod
    def stored_search(cls, data: Mapping[str, Any]) -> SearchConfig:
        """The search section of a stored config mapping, validated alone (readers that need no more).

        Args:
            data: a config as stored (`model_dump(mode="json")` of a resolved config, or an older one).

        Returns:
            Its search config, with the `protocol: reference` preset applied as a whole config would.

        Raises:
            ValidationError: the search section (or the mapping) is not valid.

        """
        search = data.get("search", {})
        if data.get("protocol") == "reference" and isinstance(search, Mapping):
            preset = {path[1:]: value for path, value in REFERENCE_PROTOCOL.items() if path[0] == "search"}
            search = _with_preset(dict(search), preset)
        return SearchConfig.model_validate(search)

    def runnable_problems(self) -> list[str]:
        """What keeps a valid config from running as an experiment, one field-named message each.

        Returns:
            Empty when it can run; today the one rule is an OoD source for the AUROC objective.

        """
        return [] if self.ood else [NO_OOD_MESSAGE]

    def to_yaml(self) -> str:
        """The fully resolved config as YAML."""
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)


def _format_errors(error: ValidationError, within: str | None = None) -> list[str]:
    """One "field.path: message" per error; `within` names the section a section's own errors lie in."""
    problems = []
    for item in error.errors():
        location = ".".join(str(part) for part in ((within,) if within else ()) + tuple(item["loc"]))
        message = item["msg"]
        if item["type"] == "extra_forbidden":
            message = "unknown key"
        message = message.removeprefix("Value error, ")
        problems.append(f"{location}: {message}" if location else message)
    return problems


def parse_config(data: Any, origin: str | None = None) -> ExperimentConfig:
    """Validates a mapping as an experiment config.

    Args:
        data: the parsed YAML/JSON mapping.
        origin: where it came from, for messages.

    Returns:
        The frozen config.

    Raises:
        ConfigError: one field-named message per problem.

    """
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError([f"the top level must be a mapping of keys, not {type(data).__name__}"], origin)
    try:
        return ExperimentConfig.model_validate(data)
    except ValidationError as error:
        raise ConfigError(_format_errors(error), origin) from None


def load_config(path: str | Path) -> ExperimentConfig:
    """Reads and validates a YAML experiment config, expanding `${VAR}` in its source strings.

    Args:
        path: the YAML file.

    Returns:
        The frozen config, its sources expanded (see `expand_source_variables`).

    Raises:
        ConfigError: the file is missing, is not YAML, has invalid fields, or a source names an unset
            environment variable.

    """
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as error:
        # the file itself is the problem, not its contents: say so, and nothing about the config
        reason = f"cannot read the config file: {error.strerror or error}"
        raise ConfigError([reason], str(path), summary=reason) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        # PyYAML names a string it parsed "<unicode string>"; its marks then point into this file
        for mark in (getattr(error, "context_mark", None), getattr(error, "problem_mark", None)):
            if mark is not None:
                mark.name = str(path)
        raise ConfigError([str(error)], str(path), summary="not valid YAML") from None
    return parse_config(expand_source_variables(data, os.environ, str(path)), str(path))


def expand_variables(text: str, environ: Mapping[str, str]) -> str:
    """Replace `${NAME}` and `${NAME:-default}` in `text` by values from `environ`.

    As in a POSIX shell, `${NAME:-default}` gives the default when NAME is unset or empty. Unlike a
    shell, a plain `${NAME}` whose variable is unset or empty is an error: an empty data root would
    silently turn `folder:${EVOPRUNE_DATA}/coral` into `folder:/coral`. A bare `$NAME` is left as it
    is, and defaults cannot contain `}` or another reference.

    Args:
        text: the string, e.g. `folder:${EVOPRUNE_DATA}/srsmas`.
        environ: the variables (usually `os.environ`).

    Returns:
        The expanded string.

    Raises:
        ValueError: a variable is unset or empty, or a reference is malformed; the message names it.

    """

    def replace(match: re.Match[str]) -> str:
        body = match.group(1)
        name, has_default, default = body.partition(":-")
        if not _VARIABLE_NAME.fullmatch(name) or "${" in default:
            raise ValueError(
                f"malformed variable reference ${{{body}}} in {text!r} "
                "(write ${NAME} or ${NAME:-default}; defaults cannot hold another reference)"
            )
        value = environ.get(name, "")
        if value:
            return value
        if has_default:
            return default
        state = "is empty" if name in environ else "is not set"
        raise ValueError(
            f"environment variable {name} {state} (used in {text!r}); set it, "
            f"or give a default as ${{{name}:-DEFAULT}}"
        )

    if "${" in _VARIABLE_REFERENCE.sub("", text):
        raise ValueError(f"unclosed variable reference '${{' in {text!r}")
    return _VARIABLE_REFERENCE.sub(replace, text)


def expand_source_variables(data: Any, environ: Mapping[str, str], origin: str | None = None) -> Any:
    """Expand environment variables in the source strings of a config mapping read from a file.

    Only `dataset.source` and `ood[*].source` are expanded: they hold the machine-specific data paths
    (`folder:${EVOPRUNE_DATA}/srsmas`). Configs that arrive over HTTP are deliberately not expanded
    (`parse_config` never calls this): a server's environment is not its clients' to read.

    Args:
        data: the parsed YAML; anything other than a mapping is returned unchanged for `parse_config`
            to report.
        environ: the variables.
        origin: where the config came from, for messages.

    Returns:
        A copy of `data` with the source strings expanded.

    Raises:
        ConfigError: a referenced variable is unset or empty, or a reference is malformed; each problem
            names the field.

    """
    if not isinstance(data, dict):
        return data
    expanded = dict(data)
    problems: list[str] = []

    def expand(section: Any, location: str) -> Any:
        if not isinstance(section, dict) or not isinstance(section.get("source"), str):
            return section
        try:
            return section | {"source": expand_variables(section["source"], environ)}
        except ValueError as error:
            problems.append(f"{location}.source: {error}")
            return section

    if "dataset" in expanded:
        expanded["dataset"] = expand(expanded["dataset"], "dataset")
    if isinstance(expanded.get("ood"), list):
        expanded["ood"] = [expand(item, f"ood.{index}") for index, item in enumerate(expanded["ood"])]
    if problems:
        raise ConfigError(problems, origin)
    return expanded


DEMO_CONFIG = "demo.yaml"


def demo_config_path() -> Path:
    """The embedded demo config: configs/demo.yaml, shipped as package data of `evoprune.configs`."""
    return Path(str(resources.files("evoprune.configs").joinpath(DEMO_CONFIG)))
