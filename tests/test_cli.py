"""Bad input: one line on stderr, exit code 2, nothing written."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from clear_ray.cli.flags import HelpFormatter
from clear_ray.cli.tune import build_parser, plan_search
from clear_ray.methods import TABLE_METHODS
from clear_ray.net import free_port
from clear_ray.pipeline.plan import method_names


def run_tune(*args: str, timeout: int = 120) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "clear_ray.tune", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout)


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
        (["--method", "ga,nope"], "--method: unknown method 'nope'; known: retain_ft, ga,"),
        (["--method", "ga,npo", "--search-space", "x.yaml"], "applies to one method, not --me"),
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
        # Impossible values: the flag and the valid range, before anything runs.
        (["--num-samples", "0"], "--num-samples, search.num_samples: 0 is outside [1, inf)"),
        (["--epochs", "0"], "--epochs, train.epochs: 0 is outside [1, inf)"),
        (["--max-concurrent", "-1"], "--max-concurrent, search.max_concurrent: -1 is outside"),
        (["--workers-per-trial", "0"], "--workers-per-trial, search.workers_per_trial: 0 is"),
        (["--set", "train.batch_size=0"], "train.batch_size: 0 is outside [1, inf)"),
        (["--set", "train.grad_accum=0"], "train.grad_accum: 0 is outside [1, inf)"),
        (["--set", "train.lr=0"], "train.lr: 0.0 is outside (0, inf)"),
        (["--set", "regularizer.l1=-1e-3"], "regularizer.l1: -0.001 is outside [0, inf)"),
        (["--set", "method.beta=0"], "method.beta: 0.0 is outside (0, inf)"),
        (["--set", "method.alpha=-1"], "method.alpha: -1.0 is outside [0, inf)"),
        (["--set", "method.layer_fraction=1.5"], "method.layer_fraction: 1.5 is outside [0, 1]"),
        (["--min-retain", "-3"], "--min-retain, search.min_retain: -3.0 is outside [0, inf)"),
        (["--min-retain", "2"], "search.min_retain: 2.0 is outside (0, 1.5]"),
        (["--min-retain", "0"], "search.min_retain: 0.0 is outside (0, 1.5]"),
        (["--retain-floor", "1.6"], "search.retain_floor: 1.6 is outside (0, 1.5]"),
        (["--reduction-factor", "1"], "search.reduction_factor: 1.0 is outside (1, inf)"),
        (["--set", "search.worker_start_timeout_s=0"], "worker_start_timeout_s: 0.0 is outside"),
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


def test_search_space_bounds_outside_the_field_range_are_refused(tmp_path: Path) -> None:
    space = tmp_path / "wide.yaml"
    space.write_text("method.alpha: {distribution: uniform, low: -1, high: 1}\n")
    result = run_tune("--search-space", str(space), "--output-dir", str(tmp_path / "out"))
    assert result.returncode == 2
    assert "method.alpha: -1.0 is outside [0, inf)" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_a_space_searching_a_field_its_method_ignores_is_refused(tmp_path: Path) -> None:
    space = tmp_path / "ga_beta.yaml"
    space.write_text("method.beta: {distribution: uniform, low: 0.1, high: 1}\n")
    output = tmp_path / "out"
    result = run_tune("--method", "ga", "--search-space", str(space), "--output-dir", str(output))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: {space}: ga does not read method.beta; its method fields: none"
    ]
    assert not output.exists()


def test_trial_shape_the_cluster_can_never_run_is_refused(tmp_path: Path) -> None:
    """Checked after connecting to Ray (the local one here), before anything is written; the
    shapes and messages: test_search_strategy.py."""
    message = "--gpus-per-trial, search.gpus_per_trial: 1 needs 1 GPU"
    output = tmp_path / "out"
    result = run_tune("--gpus-per-trial", "1", "--output-dir", str(output), timeout=300)
    assert result.returncode == 2, result.stderr[-2000:]
    lines = [line for line in result.stderr.strip().splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and message in lines[0], result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert not output.exists()


def test_a_ray_that_does_not_start_ends_the_search_in_one_line(tmp_path: Path) -> None:
    """Ray's own error when its local start times out on a loaded machine (seen under the
    suite), raised by ``ray.init``: one line that says what to do, exit 1, nothing written."""
    ray_error = (
        "Failed to get node info for possible node ids: ['ab12'] when trying to resolve node "
        "to connect to. Error: RpcError('RPC error: Deadline Exceeded')\nmore of Ray's text"
    )
    cli = (
        "import sys, ray\n"
        "def timed_out(**_): raise RuntimeError(sys.stdin.read())\n"
        "ray.init = timed_out\n"
        "from clear_ray.cli.tune import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    output = tmp_path / "out"
    command = [sys.executable, "-c", cli, "--output-dir", str(output)]
    env = {key: value for key, value in os.environ.items() if key != "RAY_ADDRESS"}
    result = subprocess.run(
        command, input=ray_error, capture_output=True, text=True, timeout=120, env=env
    )
    assert result.returncode == 1, result.stderr[-2000:]
    assert result.stderr.strip().splitlines()[-1] == (
        "error: could not start a local Ray: Failed to get node info for possible node ids: "
        "['ab12'] when trying to resolve node to connect to. Error: RpcError('RPC error: "
        "Deadline Exceeded'). Nothing was trained; run the same command again when the machine "
        "is less busy"
    )
    assert "Traceback" not in result.stderr
    assert not output.exists()


def test_a_ray_head_that_does_not_answer_is_refused_in_seconds(tmp_path: Path) -> None:
    """Ray's own client retries an absent head for minutes on end (over 5 min, measured)."""
    address = f"127.0.0.1:{free_port()}"
    output = tmp_path / "out"
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "clear_ray.tune", "--output-dir", str(output)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "RAY_ADDRESS": address},
    )
    assert result.returncode == 1, result.stderr[-2000:]
    assert result.stderr.strip().splitlines() == [
        f"error: could not join the Ray cluster at RAY_ADDRESS={address}: no Ray head answers "
        f"at {address} (Connection refused). Nothing was trained; run the same command again "
        f"once the cluster is up (or without RAY_ADDRESS, for a local Ray)"
    ]
    assert time.monotonic() - started < 60
    assert not output.exists()


def test_method_names_keep_the_users_order_once_each_and_all_is_clears_table() -> None:
    assert method_names("dpo") == ["dpo"]
    assert method_names("rmu, ga,rmu") == ["rmu", "ga"]
    assert method_names("all") == list(TABLE_METHODS)


def test_a_relative_data_dir_and_original_are_saved_absolute_for_a_resume_elsewhere(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "original").mkdir()
    monkeypatch.chdir(tmp_path)
    args = build_parser().parse_args(
        ["--data", "data", "--original", "./original", "--gold", "someone/gold@v1"]
    )
    _, state, _ = plan_search(args)  # names the search; writes nothing
    assert state.config["data.source"] == str(tmp_path.resolve() / "data")
    assert state.config["model.original"] == str(tmp_path.resolve() / "original")
    assert state.config["model.gold"] == "someone/gold@v1"  # a hub id stays as given
    assert sorted(path.name for path in tmp_path.iterdir()) == ["data", "original"]


def test_help_explains_the_main_flags() -> None:
    result = run_tune("--help")
    assert result.returncode == 0
    for flag in ("--method", "--num-samples", "--min-retain", "--tracking-uri", "--set"):
        assert flag in result.stdout


def test_help_formatter_shows_only_defaults_that_say_something() -> None:
    parser = argparse.ArgumentParser(formatter_class=HelpFormatter)
    parser.add_argument("--lr", type=float, default=1e-3, help="learning rate")
    parser.add_argument("--resume", default=None, help="continue a search")
    parser.add_argument("--name", default="", help="a name")
    parser.add_argument("--set", action="append", default=[], help="override")
    parser.add_argument("--dry-run", action="store_true", help="print only")
    text = " ".join(parser.format_help().split())
    assert "learning rate (default: 0.001)" in text
    assert text.count("(default:") == 1


@pytest.mark.parametrize("command", ["tune", "references", "evaluate"])
def test_no_command_prints_an_empty_default(command: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", f"clear_ray.{command}", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0
    for empty in ("(default: None)", "(default: )", "(default: [])", "(default: False)"):
        assert empty not in result.stdout


# What a search, an evaluation or a report needs, but --help does not: the command lines and the
# pipeline import these after parsing (each such import says so where it is).
HEAVY = ("ray", "mlflow", "scipy", "transformers", "datasets", "matplotlib", "deepspeed")


@pytest.mark.parametrize("command", ["tune", "evaluate", "references", "report"])
def test_help_answers_without_ray_mlflow_scipy_or_transformers(command: str) -> None:
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", f"clear_ray.{command}", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    imported = {
        line.rpartition("|")[2].strip().split(".")[0]
        for line in result.stderr.splitlines()
        if line.startswith("import time:")
    }
    assert "clear_ray" in imported  # the import log was read
    assert sorted(imported & set(HEAVY)) == []
