"""Turning a POSTed experiment config into a validated one, with 422 details that name each field."""

from __future__ import annotations

import re
from typing import Any, TypedDict

import yaml

from evoprune.api.allowed_paths import path_problems
from evoprune.api.http._input_text import (
    MAX_DEPTH,
    AliasExpansionError,
    load_yaml_within_budget,
    value_problem,
)
from evoprune.api.http.schemas import ExperimentCreate
from evoprune.api.settings import Settings
from evoprune.coordinator.assembly import mask_length_problem
from evoprune.shared.config import (
    ConfigError,
    ExperimentConfig,
    expand_source_variables,
    parse_config,
)

# a ConfigError problem reads "search.runs: message"; anything else has no field path in front
_LOCATION = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z0-9_]+)*): (.*)$", re.DOTALL)


class ProblemDetail(TypedDict):
    """One item of a 422 answer's `detail`, in FastAPI's validation-error form."""

    loc: list[str | int]  # where in the request: "body", "config", then the field path
    msg: str
    type: str


class ConfigInputError(ValueError):
    """Problems with a posted config, already in FastAPI's 422 detail form."""

    def __init__(self, detail: list[ProblemDetail]) -> None:
        super().__init__("; ".join(item["msg"] for item in detail))
        self.detail = detail


def _path(location: str) -> list[str | int]:
    return [int(part) if part.isdigit() else part for part in location.split(".")]


def problem_detail(problem: str, kind: str = "value_error.config") -> ProblemDetail:
    """One ConfigError problem as a 422 detail item located in the body's config.

    Args:
        problem: "field.path: message", or a message about the whole config.
        kind: the detail's type.

    Returns:
        {"loc": ["body", "config", ...], "msg": problem, "type": kind}.

    """
    match = _LOCATION.match(problem)
    location = _path(match.group(1)) if match else []
    return {"loc": ["body", "config", *location], "msg": problem, "type": kind}


def _limit(path: str, value: int, limit: int, setting: str) -> ProblemDetail | None:
    if value <= limit:
        return None
    message = f"{path}: {value} is more than this server allows ({limit}, EVOPRUNE_{setting})"
    return problem_detail(message, "value_error.limit")


def check_limits(config: ExperimentConfig, settings: Settings) -> list[ProblemDetail]:
    """The server's bounds on an experiment's size.

    Args:
        config: a valid config.
        settings: holds the bounds.

    Returns:
        One 422 detail item per bound exceeded.

    """
    search = config.search
    problems = [
        _limit("search.runs", search.runs, settings.max_runs, "MAX_RUNS"),
        _limit("search.population_size", search.population_size, settings.max_population, "MAX_POPULATION"),
        _limit("search.max_evaluations", search.max_evaluations, settings.max_evaluations, "MAX_EVALUATIONS"),
        _limit("training.max_epochs", config.training.max_epochs, settings.max_epochs, "MAX_EPOCHS"),
    ]
    # the part of the mask known before the features load; the runner checks the whole once it knows
    too_long = mask_length_problem(config, settings.max_mask_length, input_dim=None)
    if too_long is not None:
        problems.append(problem_detail(too_long, "value_error.limit"))
    # the runner would only fail later, when the features load; say it while the client is listening
    problems.extend(problem_detail(problem, "value_error.missing") for problem in config.runnable_problems())
    return [problem for problem in problems if problem is not None]


def resolve_config(body: ExperimentCreate, settings: Settings) -> ExperimentConfig:
    """Validate the posted config (mapping or YAML) and the server's limits.

    Args:
        body: the request body.
        settings: the server's limits.

    Returns:
        The validated config.

    Raises:
        ConfigInputError: with one detail item per problem.

    """
    data: Any = body.config
    if body.config_yaml is not None:
        try:
            data = load_yaml_within_budget(body.config_yaml)
        except AliasExpansionError as error:
            raise ConfigInputError(
                [{"loc": ["body", "config_yaml"], "msg": f"config_yaml: {error}", "type": "value_error.yaml"}]
            ) from None
        except yaml.YAMLError as error:
            message = " ".join(f"config_yaml: not valid YAML: {error}".split())
            raise ConfigInputError(
                [{"loc": ["body", "config_yaml"], "msg": message, "type": "value_error.yaml"}]
            ) from None
        except RecursionError:
            # PyYAML composes recursively: thousands of nested `[` exhaust the stack before any check
            message = f"config_yaml: nested more than {MAX_DEPTH} levels deep"
            raise ConfigInputError(
                [{"loc": ["body", "config_yaml"], "msg": message, "type": "value_error.yaml"}]
            ) from None
        # YAML's "\ud800" escapes and deep flow collections pass the parser but not the store
        problem = value_problem(data, "config")
        if problem is not None:
            raise ConfigInputError([problem_detail(problem.removeprefix("config."), "value_error.unicode")])
    try:
        # only the variables the server allows (its data root) are expanded; a reference to any other
        # reads as "not set", so nothing else of the server's environment can leak into an answer
        data = expand_source_variables(data, settings.config_environment(), "the posted config")
        config = parse_config(data, "the posted config")
    except ConfigError as error:
        raise ConfigInputError([problem_detail(problem) for problem in error.problems]) from None
    problems = check_limits(config, settings)
    problems += [
        problem_detail(problem, "value_error.path")
        for problem in path_problems(config, settings.allowed_root_paths())
    ]
    if problems:
        raise ConfigInputError(problems)
    return config
