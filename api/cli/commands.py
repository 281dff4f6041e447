"""The `evoprune` sub-commands: the module that registers each one, and its line in `evoprune --help`."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Command:
    """One sub-command: the module whose `register(subparsers)` adds it, and its one-line help."""

    module: str
    help: str


# In the order `evoprune --help` lists them. The listing is built from this table alone, so that `--help`,
# `--version` and every command import only the module of the command actually run (DESIGN: a CLI that
# prints its version should not load Ray, the web stack or TensorFlow).
COMMANDS: dict[str, Command] = {
    "run": Command("evoprune.api.cli.run", "run an experiment (no CONFIG: the offline demo)"),
    "resume": Command("evoprune.api.cli.run", "continue an interrupted experiment"),
    "extract": Command("evoprune.api.cli.extract", "build the feature cache for a config"),
    "bench": Command("evoprune.api.cli.bench", "time the batched evaluator against the reference-style one"),
    "validate": Command("evoprune.api.cli.validate", "check a config and print it fully resolved"),
    "analyze": Command(
        "evoprune.api.cli.analyze",
        "analyse a finished experiment: fronts, important neurons, heatmaps, ensembles",
    ),
    "export": Command(
        "evoprune.api.cli.export", "write one front member as a pruned model: Keras, SavedModel, TFLite, ONNX"
    ),
    "serve": Command("evoprune.api.cli.serve", "run the HTTP API and web page"),
    "submit": Command("evoprune.api.cli.submit", "submit an experiment to an evoprune server"),
}
