"""bench/pin_cost.py compares instruction sets only: both arms run one thread, as Ray's workers
do, and neither inherits a pin of the caller's environment."""

from __future__ import annotations

import pytest
from bench_scripts import load_bench

pin_cost = load_bench("pin_cost")


def test_the_arms_differ_in_instruction_sets_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MKL_CBWR", "AVX2")  # the caller's own pin reaches neither arm
    monkeypatch.setenv("OMP_NUM_THREADS", "8")
    pinned, unpinned = pin_cost.arm_env("pinned"), pin_cost.arm_env("unpinned")
    assert {name: pinned[name] for name in ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA")} == {
        "ATEN_CPU_CAPABILITY": "avx2",
        "ONEDNN_MAX_CPU_ISA": "AVX2",
    }
    assert pinned["MKL_CBWR"] == "COMPATIBLE" and pinned["MKL_DYNAMIC"] == "FALSE"
    for name in ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "MKL_CBWR", "MKL_DYNAMIC"):
        assert name not in unpinned
    for env in (pinned, unpinned):
        assert env["OMP_NUM_THREADS"] == env["MKL_NUM_THREADS"] == "1"


def test_the_summary_is_the_median_ratio_of_cpu_seconds() -> None:
    def line(train: float, score: float) -> dict:
        return {
            "pinned": {"train_cpu_s": train, "score_cpu_s": score},
            "unpinned": {"train_cpu_s": 1.0, "score_cpu_s": 2.0},
        }

    text = pin_cost.summary([line(1.1, 2.0), line(0.9, 2.2), line(1.3, 1.8)])
    assert text == (
        "train: pinned/unpinned CPU time median 1.100 (range 0.900-1.300, 3 pairs); "
        "score: pinned/unpinned CPU time median 1.000 (range 0.900-1.100, 3 pairs)"
    )
