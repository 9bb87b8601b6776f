"""The environment every Ray process of a search gets: clear_ray's defaults, the user's first."""

from __future__ import annotations

import pytest

from clear_ray.runtime.cluster import RAY_ENV_DEFAULTS, ray_env_vars


def test_defaults_apply_where_the_user_set_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in RAY_ENV_DEFAULTS:
        monkeypatch.delenv(name, raising=False)
    assert ray_env_vars()["RAY_TRAIN_HEALTH_CHECK_INTERVAL_S"] == "0.5"
    assert ray_env_vars()["RAY_TRAIN_ENABLE_PREEMPTION_WATCHER"] == "0"
    assert ray_env_vars()["RAY_TRAIN_METRICS_ENABLED"] == "0"


def test_the_users_environment_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAY_TRAIN_ENABLE_PREEMPTION_WATCHER", "1")
    assert ray_env_vars()["RAY_TRAIN_ENABLE_PREEMPTION_WATCHER"] == "1"
