"""Restarting the API process mid-experiment: the experiment goes on in its Ray actor and stays readable."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request

import pytest
import yaml

from tests.api.conftest import TINY_CONFIG, TOKEN
from tests.api.servers import REPO, ApiServer, RayHead, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.ray]


def get(url, path):
    request = urllib.request.Request(url + path, headers={"Authorization": f"Bearer {TOKEN}"})
    with urllib.request.urlopen(request, timeout=10) as answer:
        return json.loads(answer.read())


def test_the_experiment_survives_an_api_restart_and_the_follower_resumes(tmp_path):
    head = RayHead(cpus=2)
    head.start()
    api = ApiServer(
        {
            "RAY_ADDRESS": head.address,
            "EVOPRUNE_DATA_DIR": str(tmp_path / "data"),  # the local store, shared by API and runner
            "EVOPRUNE_API_TOKEN": TOKEN,
            "REDIS_URL": "",
        },
        tmp_path / "api.log",
    )
    follower = None
    try:
        api.start()
        config = {**TINY_CONFIG, "search": {**TINY_CONFIG["search"], "max_evaluations": 40}}
        (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(config))
        follower = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "evoprune.api.cli",
                "submit",
                str(tmp_path / "tiny.yaml"),
                "--url",
                api.url,
                "--follow",
            ],
            cwd=REPO,
            env={**os.environ, "EVOPRUNE_API_TOKEN": TOKEN},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        experiment_id = wait_for(
            lambda: (get(api.url, "/experiments")["experiments"] or [{}])[0].get("id"), 60, "the submission"
        )
        wait_for(
            lambda: get(api.url, f"/experiments/{experiment_id}")["evaluations_done"] >= 6, 300, "evaluations"
        )
        api.kill()
        api.start()
        restarted = get(api.url, f"/experiments/{experiment_id}")
        assert restarted["status"] in ("running", "succeeded") and restarted["evaluations_done"] >= 6
        out, err = follower.communicate(timeout=400)
        assert follower.returncode == 0, err[-3000:]
        assert out.strip() == experiment_id
        assert "succeeded" in err.splitlines()[-1]
        final = get(api.url, f"/experiments/{experiment_id}")
        assert final["status"] == "succeeded" and final["evaluations_done"] == 80
        evaluations = get(api.url, f"/experiments/{experiment_id}/evaluations")
        assert evaluations["total"] == 80
        # the follower printed each evaluation once, across the restart (Last-Event-ID resumed the stream)
        counters = [line.split("]")[0] for line in err.splitlines() if line.startswith("[")]
        assert counters == sorted(set(counters), key=lambda c: int(c[1:].split("/")[0]))
        assert counters[-1] == "[80/80"
    finally:
        if follower is not None and follower.poll() is None:
            follower.kill()
        api.kill()
        head.stop()
