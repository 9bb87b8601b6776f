"""bench/demo_pin_cost.py: runs alternate ABBA, only the flag decides the arm, and the summary is
the median of each arm with the pinned leaderboards compared."""

from __future__ import annotations

from pathlib import Path

import pytest
from bench_scripts import load_bench

demo_pin_cost = load_bench("demo_pin_cost")


def test_runs_alternate_abba_so_a_drift_falls_on_both_arms() -> None:
    assert demo_pin_cost.arm_order(6) == [
        "pinned", "unpinned", "unpinned", "pinned", "pinned", "unpinned",
    ]  # fmt: skip


def test_only_the_flag_decides_the_arm(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MKL_CBWR", "AVX2")  # a caller's own pin would decide for the driver
    monkeypatch.setenv("ATEN_CPU_CAPABILITY", "avx512")
    env = demo_pin_cost.caller_env_without_pins()  # so that only the flag decides
    assert "MKL_CBWR" not in env and "ATEN_CPU_CAPABILITY" not in env
    pinned = demo_pin_cost.demo_command("pinned", Path("/o"))
    unpinned = demo_pin_cost.demo_command("unpinned", Path("/o"))
    assert pinned[1:] == ["-m", "clear_ray.tune", "--method", "dpo", "--output-dir", "/o"]
    assert unpinned[1:] == [*pinned[1:], "--set", "search.pin_cpu_kernels=false"]


def test_the_summary_is_each_arms_median_and_compares_the_pinned_leaderboards() -> None:
    def line(arm: str, wall: float, cpu: float, digest: str = "a") -> dict:
        return {"arm": arm, "wall_s": wall, "machine_cpu_s": cpu, "leaderboard_sha256": digest}

    lines = [line("pinned", 1200, 2000), line("unpinned", 1000, 1500, "b"),
             line("unpinned", 900, 1700, "c"), line("pinned", 1300, 2200)]  # fmt: skip
    assert demo_pin_cost.summary(lines) == (
        "wall_s median pinned 1250 / unpinned 950 = 1.316; "
        "machine_cpu_s median pinned 2100 / unpinned 1600 = 1.312; "
        "pinned leaderboards identical"
    )
    lines[3]["leaderboard_sha256"] = "z"
    assert demo_pin_cost.summary(lines).endswith("pinned leaderboards DIFFER")


def test_the_leaderboard_digest_leaves_out_the_random_trial_ids(tmp_path: Path) -> None:
    def board(run: str, trial: str, value: str) -> Path:
        folder = tmp_path / run / "searches" / "dpo-1"
        folder.mkdir(parents=True)
        text = f'model,trial,log FQ\nOriginal,,-6.75\n"dpo (tuned, 3 seeds)",{trial},{value}\n'
        (folder / "leaderboard_full.csv").write_text(text)
        return tmp_path / run

    first, second = board("a", "eacc5970", "-6.5767"), board("b", "538edaea", "-6.5767")
    other = board("c", "eacc5970", "-6.5768")
    digest = demo_pin_cost.leaderboard_digest
    assert digest(first) == digest(second) != digest(other)
