"""Suite-wide fixtures: keep tests that do not ask for Redis away from the shared fitness cache."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _no_shared_fitness_cache_unless_asked(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch):
    # scripts/test.sh exports REDIS_URL; a CLI run started by a test would then share its fitness cache
    # with every earlier run on the same features, turning "trained" rows into cache hits. Only tests
    # marked `redis` see the variable (and they use their own key prefixes).
    if request.node.get_closest_marker("redis") is None:
        monkeypatch.delenv("REDIS_URL", raising=False)
