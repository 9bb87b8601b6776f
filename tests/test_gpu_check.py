"""bench/gpu_check.py without a GPU: its one line and exit 0, the isolation of its parts, the
JSON it writes, and its plain-torch NF4 against values worked out by hand."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from bench_scripts import load_bench

gpu_check = load_bench("gpu_check")


def test_without_a_gpu_it_says_so_in_one_line_and_exits_0(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert gpu_check.main(["--out-dir", str(tmp_path / "results")]) == 0
    out = capsys.readouterr().out
    assert out == "gpu_check: no CUDA GPU on this machine (torch.cuda.is_available() is False)\n"
    assert not (tmp_path / "results").exists()


def test_a_failing_part_is_recorded_and_the_others_still_run() -> None:
    def failing() -> dict:
        raise ValueError("boom")

    results = gpu_check.run_parts(
        [("first", lambda: {"value": 1}), ("broken", failing), ("last", lambda: {"value": 3})]
    )
    assert list(results) == ["first", "broken", "last"]
    assert results["first"]["ok"] and results["first"]["value"] == 1
    assert results["broken"]["ok"] is False and results["broken"]["error"] == "ValueError: boom"
    assert results["last"]["ok"] and results["last"]["value"] == 3
    assert all(result["seconds"] >= 0 for result in results.values())


def test_with_a_gpu_it_writes_every_parts_result_and_exits_1_if_one_failed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def failing() -> dict:
        raise RuntimeError("exit 1: CUDA out of memory")

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda index: "Test GPU")
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: None)
    monkeypatch.setattr(gpu_check, "parts", lambda scratch: [("a", dict), ("b", failing)])
    assert gpu_check.main(["--out-dir", str(tmp_path)]) == 1
    (written,) = tmp_path.glob("gpu_check-*.json")
    report = json.loads(written.read_text())
    assert report["device"] == "Test GPU"
    assert report["parts"]["a"]["ok"] is True
    assert report["parts"]["b"] == {
        "ok": False,
        "error": "RuntimeError: exit 1: CUDA out of memory",
        "seconds": report["parts"]["b"]["seconds"],
    }


def test_the_parts_are_the_four_checks_with_the_7b_step_last(tmp_path: Path) -> None:
    names = [name for name, _ in gpu_check.parts(tmp_path)]
    assert names == ["search", "eval_throughput", "nf4", "train_step_7b"]


def test_nf4_comparison_fails_below_the_agreement() -> None:
    same = torch.ones(10_000)
    assert gpu_check.compare_nf4(same, same)["equal_fraction"] == 1.0
    off = same.clone()
    off[:20] = 0.5  # 99.8 % equal
    with pytest.raises(AssertionError, match=r"agree on 0\.99800"):
        gpu_check.compare_nf4(same, off)
