"""A CPU search pins its kernels in the driver and in every Ray process; a GPU search, or one
with search.pin_cpu_kernels=false, does not; a variable the user set wins."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from clear_ray.config import Config
from clear_ray.errors import ConfigError
from clear_ray.kernels import kernel_env, kernels_tag, missing_pins, pinned_settings

PINS = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "MKL_CBWR", "MKL_DYNAMIC")


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (*PINS, "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        monkeypatch.delenv(name, raising=False)


def search(**fields):
    return Config().replace({f"search.{k}": v for k, v in fields.items()}).search


def test_a_cpu_search_is_pinned_to_avx2_with_one_thread_per_cpu(clean_env) -> None:
    assert pinned_settings(search()) == {
        "ATEN_CPU_CAPABILITY": "avx2",
        "ONEDNN_MAX_CPU_ISA": "AVX2",
        "MKL_CBWR": "COMPATIBLE",
        "MKL_DYNAMIC": "FALSE",
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
    }
    assert pinned_settings(search(cpus_per_worker=4.0))["OMP_NUM_THREADS"] == "4"
    assert kernels_tag(search()).startswith("pinned: ATEN_CPU_CAPABILITY=avx2, MKL_CBWR=COMPATIBLE")


def test_gpu_searches_and_the_switch_off_are_not_pinned(clean_env) -> None:
    assert pinned_settings(search(gpus_per_trial=1.0)) == {}
    assert pinned_settings(search(pin_cpu_kernels=False)) == {}
    assert kernels_tag(search(pin_cpu_kernels=False)) == "unpinned"


def test_the_users_setting_wins_and_the_tag_says_so(clean_env, monkeypatch) -> None:
    monkeypatch.setenv("MKL_CBWR", "AVX2")
    assert kernel_env(search())["MKL_CBWR"] == "AVX2"
    assert "MKL_CBWR=AVX2" in kernels_tag(search())


def test_a_ray_jobs_missing_pins_are_those_it_lacks_or_sets_otherwise(clean_env) -> None:
    pinned = pinned_settings(search())
    assert missing_pins(search(), {}) == pinned
    assert missing_pins(search(), {**pinned, "TOKENIZERS_PARALLELISM": "false"}) == {}
    threads = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    assert missing_pins(search(), {**pinned, "OMP_NUM_THREADS": "2"}) == {"OMP_NUM_THREADS": "1"}
    assert missing_pins(search(pin_cpu_kernels=False), {}) == {}
    assert missing_pins(search(cpus_per_worker=2.0), pinned) == {k: "2" for k in threads}


@pytest.mark.parametrize("start", ["local_ray", "init_ray"])
def test_a_ray_this_process_started_without_the_pins_is_refused(
    clean_env, monkeypatch: pytest.MonkeyPatch, start: str
) -> None:
    """Joined as it is, its workers would build unpinned models under pinned models' cache
    names: the tests' own Ray did (every weight of Original differed, same cache name)."""
    import ray

    from clear_ray.runtime import cluster

    def joined(env: dict[str, str]) -> None:
        monkeypatch.setattr(ray, "is_initialized", lambda: True)
        context = SimpleNamespace(runtime_env={"env_vars": env})
        monkeypatch.setattr(ray, "get_runtime_context", lambda: context)
        monkeypatch.setattr(ray, "init", lambda **kwargs: pytest.fail("Ray started again"))

    def run() -> None:
        if start == "local_ray":
            with cluster.local_ray(search()):
                pass
        else:
            cluster.init_ray(search())

    joined(cluster.ray_env_vars())
    with pytest.raises(ConfigError, match=r"without ATEN_CPU_CAPABILITY=avx2, MKL_CBWR=COMPATIBLE"):
        run()
    joined({**cluster.ray_env_vars(), **pinned_settings(search())})
    run()  # a pinned Ray is joined as it is
    joined({})
    monkeypatch.setenv("ATEN_CPU_CAPABILITY", "default")  # the user's setting wins ...
    with pytest.raises(ConfigError, match="ATEN_CPU_CAPABILITY=default"):  # ... in Ray too
        run()


PROBE = """
import json, os
import ray
from clear_ray.config import Config
from clear_ray.runtime.cluster import init_ray

def kernels():
    import torch
    return {"capability": torch.backends.cpu.get_cpu_capability(),
            "threads": torch.get_num_threads(),
            **{name: os.environ.get(name, "") for name in ("MKL_CBWR", "ONEDNN_MAX_CPU_ISA")}}

init_ray(Config().search)
task = ray.remote(num_cpus=1)(kernels)
print(json.dumps({"driver": kernels(), "task": ray.get(task.remote())}))
ray.shutdown()
"""


@pytest.mark.slow
def test_the_driver_and_its_ray_tasks_run_pinned_kernels(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in (*PINS, "RAY_ADDRESS")}
    probe = tmp_path / "probe.py"
    probe.write_text(PROBE)
    done = subprocess.run(
        [sys.executable, str(probe)], capture_output=True, text=True, env=env, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").is_file() else ""
    expected = "AVX2" if " avx2" in flags else "DEFAULT"  # capped at what the CPU has
    for process in ("driver", "task"):
        assert seen[process]["capability"] == expected, seen
        assert seen[process]["MKL_CBWR"] == "COMPATIBLE"
        assert seen[process]["ONEDNN_MAX_CPU_ISA"] == "AVX2"
    assert seen["task"]["threads"] == 1
