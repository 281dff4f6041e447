"""A local run's settings (CLI flags, `evoprune.run`): the shared cache read as the service reads it."""

import pytest

from evoprune.api.cli.main import build_parser
from evoprune.api.settings import Settings, local_run_settings
from evoprune.shared.config import ConfigError


def test_flags_and_the_environment_make_the_same_settings_as_the_service(monkeypatch, tmp_path):
    monkeypatch.delenv("REDIS_URL", raising=False)
    monkeypatch.setenv("EVOPRUNE_REDIS_URL", "redis://example:6379/2")
    monkeypatch.setenv("EVOPRUNE_REDIS_PREFIX", "lab")
    args = build_parser().parse_args(["run", "--workers", "3", "--address", "ray://head:10001"])
    settings = local_run_settings(args.workers, args.address)
    assert (settings.workers, settings.address, settings.show_progress) == (3, "ray://head:10001", True)
    service = Settings(data_dir=tmp_path).run_settings()
    assert (settings.redis_url, settings.redis_prefix) == (service.redis_url, service.redis_prefix)
    assert settings.redis_url == "redis://example:6379/2" and settings.redis_prefix == "lab"


def test_without_redis_the_command_line_shares_no_cache(monkeypatch):
    monkeypatch.delenv("REDIS_URL", raising=False)
    monkeypatch.delenv("EVOPRUNE_REDIS_URL", raising=False)
    settings = local_run_settings(workers=0, address=None)
    assert settings.redis_url is None and settings.local_fitness_cache is None


def test_a_bad_prefix_is_refused_by_name(monkeypatch):
    monkeypatch.setenv("EVOPRUNE_REDIS_PREFIX", "no spaces allowed")
    with pytest.raises(ConfigError, match="redis_prefix"):
        local_run_settings(workers=None, address=None)
