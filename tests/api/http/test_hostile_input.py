"""Hostile input answers 4xx, never 500, and never poisons what other clients read (issue 13)."""

import json
import threading
from urllib.parse import quote

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from evoprune.coordinator.service.records import new_record
from evoprune.shared.config import parse_config
from evoprune.shared.store import valid_experiment_id
from tests.api.conftest import TINY_CONFIG

LONE_SURROGATE = "\ud800"


def post_raw(client, body):
    # json.dumps escapes a lone surrogate as "\ud800", exactly what a hostile client sends
    return client.post("/experiments", content=json.dumps(body), headers={"Content-Type": "application/json"})


def with_field(path, value):
    config = json.loads(json.dumps(TINY_CONFIG))
    target = config
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return config


def submitted(client):
    response = client.post("/experiments", json={"config": TINY_CONFIG})
    assert response.status_code == 201, response.text
    return response.json()["id"]


@pytest.mark.parametrize(
    "body",
    [
        {"config": TINY_CONFIG, "name": LONE_SURROGATE},
        {"config": with_field(["name"], LONE_SURROGATE)},
        {"config": with_field(["dataset", "source"], "folder:" + LONE_SURROGATE)},
        {"config": {**TINY_CONFIG, LONE_SURROGATE: 1}},
        {"config_yaml": 'name: "\\ud800"\n'},
    ],
    ids=["top-name", "config-name", "source", "key", "yaml-escape"],
)
def test_a_lone_surrogate_is_a_422_and_the_list_still_answers(client, body):
    response = post_raw(client, body)
    assert response.status_code == 422, response.text
    assert "surrogate" in response.text or "unicode" in response.text
    assert client.get("/experiments").status_code == 200


def test_deep_nesting_is_a_422(client):
    deep_yaml = post_raw(client, {"config_yaml": "[" * 5000})
    assert deep_yaml.status_code == 422, deep_yaml.text
    assert deep_yaml.json()["detail"][0]["loc"] == ["body", "config_yaml"]
    deep_json = client.post(
        "/experiments",
        content='{"config": {"name": ' + "[" * 900 + "]" * 900 + "}}",
        headers={"Content-Type": "application/json"},
    )
    assert deep_json.status_code == 422, deep_json.text
    assert "nested" in deep_json.text
    # past the JSON parser's own recursion limit (about 1,000 levels) the body cannot even be parsed
    for levels in (1_500, 100_000):
        deeper = client.post(
            "/experiments",
            content='{"config": {"name": ' + "[" * levels + "]" * levels + "}}",
            headers={"Content-Type": "application/json"},
        )
        assert deeper.status_code == 422, deeper.text
        assert "nested more than" in deeper.json()["detail"][0]["msg"]


def alias_bomb(levels):
    """YAML whose every level is a list of nine aliases to the level below: 9**levels strings expanded."""
    lines = ['a: &a ["x","x","x","x","x","x","x","x","x"]']
    for level in range(1, levels):
        below, name = chr(ord("a") + level - 1), chr(ord("a") + level)
        lines.append(f"{name}: &{name} [" + ",".join([f"*{below}"] * 9) + "]")
    return "\n".join(lines) + "\n"


# generous: a refusal takes milliseconds; before the fix nine levels held a core for about five minutes
ALIAS_BOMB_ANSWERED_WITHIN_S = 30


@pytest.mark.parametrize("levels", [6, 9])
def test_a_yaml_alias_bomb_is_refused_before_it_expands(client, levels):
    answers = []
    body = {"config_yaml": alias_bomb(levels)}
    assert len(body["config_yaml"]) < 400
    poster = threading.Thread(target=lambda: answers.append(post_raw(client, body)), daemon=True)
    poster.start()
    poster.join(ALIAS_BOMB_ANSWERED_WITHIN_S)
    assert answers, f"no answer within {ALIAS_BOMB_ANSWERED_WITHIN_S} s"
    response = answers[0]
    assert response.status_code == 422, response.text
    detail = response.json()["detail"][0]
    assert detail["loc"] == ["body", "config_yaml"]
    assert "alias" in detail["msg"], detail


def test_a_config_that_uses_an_anchor_a_few_times_is_accepted(client):
    config = json.loads(json.dumps(TINY_CONFIG))
    text = yaml.safe_dump(config, sort_keys=False).replace(
        "max_epochs: 3", "max_epochs: &e 3\n  batch_size: *e"
    )
    assert "*e" in text
    response = post_raw(client, {"config_yaml": text})
    assert response.status_code == 201, response.text


def test_a_unicode_digit_as_last_event_id_is_a_400(client):
    experiment_id = submitted(client)
    by_query = client.get(f"/experiments/{experiment_id}/events", params={"last_event_id": "²"})
    assert by_query.status_code == 400, by_query.text
    by_header = client.get(
        f"/experiments/{experiment_id}/events", headers={"Last-Event-ID": "²".encode("latin-1")}
    )
    assert by_header.status_code == 400, by_header.text


def test_ids_and_artifact_names_with_a_trailing_newline_are_refused(client):
    assert not valid_experiment_id("0123456789abcdef\n")
    experiment_id = submitted(client)
    assert client.get(f"/experiments/{experiment_id}%0A").status_code == 404
    assert client.get(f"/experiments/{experiment_id}/artifacts/config.yaml%0A").status_code == 404


# every character, control characters included; st.text() never yields a lone surrogate, so the
# characters are joined by hand, with surrogates drawn from their own range
ANY_TEXT = st.lists(
    st.one_of(
        st.characters(exclude_categories=()), st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)
    ),
    max_size=40,
).map("".join)
CONFIG_STRING_FIELDS = [
    ["name"],
    ["dataset", "source"],
    ["backbone", "name"],
    ["backbone", "weights"],
    ["cache_dir"],
    ["fitness_split"],
    ["protocol"],
]


def _url_text(text):
    # a path or query holding raw bytes that are not UTF-8 is what a hostile client can send
    return quote(text.encode("utf-8", "surrogatepass"), safe="")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    field=st.sampled_from(CONFIG_STRING_FIELDS),
    text=ANY_TEXT,
    top_name=st.one_of(st.none(), ANY_TEXT),
    parameter=ANY_TEXT,
)
def test_arbitrary_unicode_anywhere_never_answers_5xx(client, field, text, top_name, parameter):
    body = {"config": with_field(field, text)}
    if top_name is not None:
        body["name"] = top_name
    assert post_raw(client, body).status_code < 500
    yaml_body = {"config_yaml": f"name: {json.dumps(text)}\ndataset: {{source: {json.dumps(text)}}}\n"}
    assert post_raw(client, yaml_body).status_code < 500
    encoded = _url_text(parameter)
    for url in (
        f"/experiments/{encoded}",
        f"/experiments/{encoded}/front",
        f"/experiments/{encoded}/artifacts",
        f"/experiments?status={encoded}",
        f"/experiments/0123456789abcdef/artifacts/{encoded}",
        f"/experiments/0123456789abcdef/events?last_event_id={encoded}",
    ):
        assert client.get(url).status_code < 500, url
    listing = client.get("/experiments")
    assert listing.status_code == 200, listing.text


def test_a_record_stored_before_the_check_is_still_listed(client, tmp_path):
    # a record written by an older version, with the lone surrogate it let through
    config = parse_config(TINY_CONFIG)
    record = new_record("00000000000000bb", config, tmp_path / "results", name="poisoned " + LONE_SURROGATE)
    record.config = {**record.config, "name": LONE_SURROGATE}
    client.app.state.store.create(record)
    listing = client.get("/experiments")
    assert listing.status_code == 200, listing.text
    assert client.get(f"/experiments/{record.id}").status_code == 200
