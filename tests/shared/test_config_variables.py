"""Environment variables in the source strings of config files: `${VAR}` and `${VAR:-default}`."""

from __future__ import annotations

import pytest

from evoprune.shared.config import (
    ConfigError,
    expand_source_variables,
    expand_variables,
    load_config,
    parse_config,
)


@pytest.mark.parametrize(
    ("text", "environ", "expected"),
    [
        ("folder:${ROOT}/coral", {"ROOT": "/data"}, "folder:/data/coral"),
        ("folder:${ROOT:-/fallback}/coral", {}, "folder:/fallback/coral"),
        ("folder:${ROOT:-/fallback}/coral", {"ROOT": ""}, "folder:/fallback/coral"),
        ("folder:${ROOT:-/fallback}/coral", {"ROOT": "/set"}, "folder:/set/coral"),
        ("folder:${A}/${B}", {"A": "/x", "B": "y"}, "folder:/x/y"),
        ("folder:${A:-}x", {}, "folder:x"),
        ("folder:/plain/$HOME/path", {}, "folder:/plain/$HOME/path"),
        ("tfds:rock_paper_scissors", {}, "tfds:rock_paper_scissors"),
    ],
)
def test_expansion(text, environ, expected):
    assert expand_variables(text, environ) == expected


@pytest.mark.parametrize(
    ("text", "environ", "message"),
    [
        ("folder:${ROOT}/coral", {}, "environment variable ROOT is not set"),
        ("folder:${ROOT}/coral", {"ROOT": ""}, "environment variable ROOT is empty"),
        ("folder:${1ROOT}", {}, "malformed variable reference"),
        ("folder:${}", {}, "malformed variable reference"),
        ("folder:${A:-${B}}", {}, "malformed variable reference"),
        ("folder:${ROOT/coral", {"ROOT": "/x"}, "unclosed variable reference"),
    ],
)
def test_expansion_problems(text, environ, message):
    with pytest.raises(ValueError, match=message):
        expand_variables(text, environ)


def test_a_value_holding_a_reference_is_not_expanded_again():
    assert expand_variables("folder:${A}", {"A": "/odd${B}"}) == "folder:/odd${B}"


def test_only_source_strings_are_expanded():
    data = {
        "name": "${NAME}",
        "dataset": {"source": "folder:${ROOT}/a"},
        "ood": [{"source": "folder:${ROOT}/b"}, {"source": "sklearn:sample_images"}],
        "cache_dir": "${ROOT}",
    }
    expanded = expand_source_variables(data, {"ROOT": "/r"})
    assert expanded["dataset"]["source"] == "folder:/r/a"
    assert [item["source"] for item in expanded["ood"]] == ["folder:/r/b", "sklearn:sample_images"]
    assert expanded["name"] == "${NAME}" and expanded["cache_dir"] == "${ROOT}"
    assert data["dataset"]["source"] == "folder:${ROOT}/a", "the input mapping is left as it was"


def test_every_unset_variable_is_named_with_its_field():
    data = {
        "dataset": {"source": "folder:${DATA}/a"},
        "ood": [{"source": "tfds:x"}, {"source": "folder:${OOD}"}],
    }
    with pytest.raises(ConfigError) as caught:
        expand_source_variables(data, {}, "exp.yaml")
    assert caught.value.problems[0].startswith("dataset.source: environment variable DATA is not set")
    assert caught.value.problems[1].startswith("ood.1.source: environment variable OOD is not set")
    assert str(caught.value).startswith("exp.yaml: ")


def test_malformed_sections_are_left_for_the_schema_to_report():
    assert expand_source_variables(["a list"], {}) == ["a list"]
    assert expand_source_variables({"dataset": "text", "ood": "text"}, {}) == {
        "dataset": "text",
        "ood": "text",
    }


def test_load_config_expands_from_the_environment(tmp_path, monkeypatch):
    path = tmp_path / "exp.yaml"
    path.write_text("dataset:\n  source: folder:${EVOPRUNE_TEST_ROOT}/coral\n")
    monkeypatch.setenv("EVOPRUNE_TEST_ROOT", str(tmp_path))
    assert load_config(path).dataset.source == f"folder:{tmp_path}/coral"
    monkeypatch.delenv("EVOPRUNE_TEST_ROOT")
    with pytest.raises(
        ConfigError, match=r"dataset\.source: environment variable EVOPRUNE_TEST_ROOT is not set"
    ):
        load_config(path)


def test_parse_config_never_reads_the_environment(monkeypatch):
    # configs posted over HTTP go through parse_config: a client must not read the server's environment
    monkeypatch.setenv("EVOPRUNE_TEST_SECRET", "hunter2")
    config = parse_config({"dataset": {"source": "folder:${EVOPRUNE_TEST_SECRET}"}})
    assert config.dataset.source == "folder:${EVOPRUNE_TEST_SECRET}"
