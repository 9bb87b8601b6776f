"""Searches on a local copy of therem/CLEAR without TOFU; a cache cut short; two searches at
once in one output directory. Each is a real search (Ray, training) cut to one 1-epoch trial,
on references of a short recipe (what is checked is which ones are built, not what they know).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from clear_copies import therem_clear_copy
from e2e_scale import QUICK_REFERENCES, SESSION_OVERRIDES

from clear_ray.data import synthetic

pytestmark = pytest.mark.slow

SHORT = ["--num-samples", "1", "--epochs", "1", "--confirm-seeds", "0",
         "--robustness", "none", "--set", "eval.generate=false", *QUICK_REFERENCES]  # fmt: skip


def search(data: Path, out: Path, *extra: str) -> list[str]:
    command = [sys.executable, "-m", "clear_ray.tune", "--data", str(data),
               "--output-dir", str(out), *SHORT, *extra]  # fmt: skip
    return command


def final_metrics(out: Path) -> dict[str, float]:
    """The best trial's final evaluation in the latest search of ``out``."""
    path = max(
        out.glob("searches/*/*/final_evaluation/metrics.json"), key=lambda p: p.stat().st_mtime
    )
    return json.loads(path.read_text())["metrics"]


@pytest.fixture(scope="module")
def clear_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    persons = SESSION_OVERRIDES["data.synthetic_persons"]  # the tests' data, in the hub's layout
    made = synthetic.generate(tmp_path_factory.mktemp("synthetic") / "data", persons)
    return therem_clear_copy(made, tmp_path_factory.mktemp("hub") / "CLEAR")


@pytest.fixture(scope="module")
def first_search(clear_copy: Path, tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("out")
    result = subprocess.run(search(clear_copy, out), capture_output=True, text=True, timeout=1500)
    return out, result


@pytest.mark.timeout(1600)
def test_a_local_copy_without_tofu_runs_the_default_search(clear_copy: Path, first_search) -> None:
    out, result = first_search
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stderr.splitlines()
    note = [i for i, line in enumerate(lines) if "has no forget10_tofu_perturbed" in line]
    assert len(note) == 1
    assert "the objective uses forget_captions" in lines[note[0]]
    built = next(i for i, line in enumerate(lines) if "pretrained base: trained" in line)
    assert note[0] < built  # said before anything is trained
    metrics = final_metrics(out)
    assert "forget_captions/log_forget_quality" in metrics
    assert not [key for key in metrics if key.startswith("forget_text_perturbed/")]
    assert metrics["log_forget_quality"] == metrics["forget_captions/log_forget_quality"]


@pytest.mark.timeout(1600)
def test_a_cut_cached_model_and_evaluation_are_built_again(clear_copy: Path, first_search) -> None:
    out, first = first_search
    assert first.returncode == 0, first.stderr[-3000:]
    (original,) = out.glob("cache/models/tiny-llava-original-*")
    weights = original / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])  # a full disk, a killed copy
    gold_evaluation = sorted(out.glob("cache/evaluations/tiny-llava-gold-*/*/reference.json"))[0]
    gold_evaluation.write_text(gold_evaluation.read_text()[:50])
    result = subprocess.run(search(clear_copy, out), capture_output=True, text=True, timeout=1500)
    assert result.returncode == 0, result.stderr[-3000:]
    warnings = [line for line in result.stderr.splitlines() if "failed its check" in line]
    assert len(warnings) == 2, warnings
    assert (
        f"cached original at {original} failed its check (model.safetensors is 1000 "
        in (warnings[0])
    )
    assert f"{gold_evaluation.parent} failed its check (reference.json is 50 bytes" in warnings[1]
    assert "original: finetuned by a Ray Train job" in result.stderr
    assert "original: cached" not in result.stderr
    assert weights.stat().st_size > 1000
    assert final_metrics(out)["forget_captions/log_forget_quality"] < 0  # the trial ran


@pytest.mark.timeout(2400)
def test_two_searches_at_once_in_one_folder_build_each_reference_once(
    clear_copy: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    logs = [tmp_path / "first.log", tmp_path / "second.log"]
    processes = []
    for log in logs:
        with log.open("w") as handle:
            processes.append(
                subprocess.Popen(search(clear_copy, out), stdout=handle, stderr=subprocess.STDOUT)
            )
        # The second starts once the first has named its search folder (names are by the
        # second), long before the first has built anything.
        while "files in" not in log.read_text() and processes[-1].poll() is None:
            time.sleep(0.5)
    for process in processes:
        assert process.wait(timeout=2300) == 0
    texts = [log.read_text() for log in logs]
    ran = Counter(
        name for text in texts for name in re.findall(r"\[clear_ray\] (\w+): ran in pid", text)
    )
    assert {"pretrained_base", "original_model", "gold_model"} <= set(ran)
    assert set(ran.values()) == {1}, ran  # each reference made by one of the two
    assert any("another process is building" in text for text in texts)
    assert len(list(out.glob("searches/*/*/final_evaluation/metrics.json"))) == 2
