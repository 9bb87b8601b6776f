"""Bad input: one line on stderr, exit code 2, nothing written."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest


def run_tune(*args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "clear_ray.tune", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", "train.lr=fast"], "train.lr: expected float"),
        (["--set", "train.nope=1"], "unknown config path 'train.nope'"),
        (["--num-samples", "two"], "search.num_samples: expected int"),
        (["--forget-split", "forget50"], "data.forget_split: 'forget50' is not one of"),
        (["--data", "/nonexistent/dir/x/y"], "data directory /nonexistent/dir/x/y does not exist"),
        (["--data", "./missing"], "data directory ./missing does not exist"),
        (["--data", "not-a-hub-id"], "neither a directory nor a hub id"),
        (["--tracking-uri", "http://127.0.0.1:9"], "http://127.0.0.1:9 is unreachable"),
        (["--method", "all", "--set", "search.sampler=grid"], "search.sampler=grid needs"),
        (["--resume", "nope"], "no search named 'nope'"),
        (["--set", "eval.tasks=nope"], "eval.tasks: unknown task 'nope'"),
        (["--set", "eval.tasks=retain_captions"], "eval.tasks must include forget_captions"),
        (
            ["--modality", "text", "--set", "eval.tasks=forget_captions"],
            "eval.tasks must include forget_text_perturbed (the objective of --modality text)",
        ),
        (["--retain-metric", "forget_metric"], "search.retain_metric: 'forget_metric' is not one"),
        (["--storage-path", "foo://bucket/x"], "storage path foo://bucket/x is unusable"),
        (
            ["--set", "train.zero_stage=3", "--workers-per-trial", "2"],
            "train.zero_stage=3 needs --workers-per-trial 1",
        ),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path: Path, args: list[str], message: str) -> None:
    output = tmp_path / "out"
    result = run_tune(*args, "--output-dir", str(output))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0]
    assert not output.exists()


def test_malformed_search_space_fails_before_anything_starts(tmp_path: Path) -> None:
    space = tmp_path / "broken.yaml"
    space.write_text("train.lr: {distribution: loguniform, low: 0, high: 1}\n")
    result = run_tune("--search-space", str(space), "--output-dir", str(tmp_path / "out"))
    assert result.returncode == 2
    assert "log distribution needs low > 0" in result.stderr
    assert not (tmp_path / "out").exists()


def test_help_explains_the_main_flags() -> None:
    result = run_tune("--help")
    assert result.returncode == 0
    for flag in ("--method", "--num-samples", "--min-retain", "--tracking-uri", "--set"):
        assert flag in result.stdout
