"""The cap on active experiments holds under concurrent submissions: counted and created in one step."""

import threading

from tests.api.conftest import TINY_CONFIG, make_client

CAP = 8
SUBMITTERS = 40
# generous: each submission takes milliseconds
ANSWERED_WITHIN_S = 120


def test_concurrent_submissions_never_pass_the_cap(tmp_path, any_store):
    with make_client(tmp_path, any_store, max_active_experiments=CAP) as client:
        start = threading.Barrier(SUBMITTERS)
        statuses: list[int] = []

        def submit():
            start.wait(timeout=ANSWERED_WITHIN_S)
            statuses.append(client.post("/experiments", json={"config": TINY_CONFIG}).status_code)

        threads = [threading.Thread(target=submit, daemon=True) for _ in range(SUBMITTERS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(ANSWERED_WITHIN_S)
        assert len(statuses) == SUBMITTERS
        assert statuses.count(201) == CAP, sorted(statuses)
        assert statuses.count(429) == SUBMITTERS - CAP
        listed = client.get("/experiments", params={"status": "queued"}).json()
        assert listed["total"] == CAP
        answer = client.post("/experiments", json={"config": TINY_CONFIG})
        assert answer.status_code == 429 and f"{CAP} experiments" in answer.json()["detail"]
