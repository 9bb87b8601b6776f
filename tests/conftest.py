"""Shared fixtures: one synthetic dataset and Original/Gold pair per session; a pinned Ray per
module; a load counter."""

from __future__ import annotations

from pathlib import Path

import pytest
from e2e_scale import SESSION_OVERRIDES

from clear_ray.config import Config
from clear_ray.data.source import resolve_source


@pytest.fixture(scope="session")
def session_output(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An output dir whose data and model cache the slow tests share (finetuning is the cost)."""
    return tmp_path_factory.mktemp("clear_ray_session")


@pytest.fixture(scope="session")
def session_config(session_output: Path) -> Config:
    return Config().replace({"output_dir": str(session_output), **SESSION_OVERRIDES})


@pytest.fixture(scope="session")
def synthetic_source(session_config: Config) -> str:
    return resolve_source(session_config)


@pytest.fixture(scope="module")
def ray_session():
    """A local Ray for the module, with a search's environment and CPU kernel pins
    (``runtime/cluster.py`` ``init_ray``): the session's Original and Gold, built in it when
    the module is the first to need them, are then the models every other module builds."""
    import ray

    from clear_ray.kernels import kernel_env
    from clear_ray.runtime.cluster import ray_env_vars

    env = {**ray_env_vars(), **kernel_env(Config().search)}
    ray.init(
        num_cpus=2, include_dashboard=False, log_to_driver=False, runtime_env={"env_vars": env}
    )
    yield
    ray.shutdown()


@pytest.fixture
def clear_loads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The CLEAR configs that evaluations load from disk during the test, in order."""
    from clear_ray.data.clear import load_clear
    from clear_ray.eval import suite

    loads: list[str] = []

    def counting_load(source: str, clear_config: str):
        loads.append(clear_config)
        return load_clear(source, clear_config)

    monkeypatch.setattr(suite, "load_clear", counting_load)
    return loads


@pytest.fixture(scope="session")
def one_rank_group():
    """A 1-rank gloo process group for DeepSpeed engines built outside Ray (Ray makes the group
    in its workers), kept for the session (``ensure_process_group`` says why)."""
    from clear_ray.runtime.backend import ensure_process_group

    ensure_process_group()
