"""A local copy of therem/CLEAR (no forgetNN_tofu_perturbed) and of locuslab/TOFU: what a
search finds missing before it trains, and the view that adds TOFU's perturbed QA."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from clear_copies import therem_clear_copy, tofu_copy

from clear_ray.cache import MANIFEST
from clear_ray.config import Config, EvalConfig
from clear_ray.data import synthetic
from clear_ray.data.clear import config_available, data_fingerprint, load_clear
from clear_ray.data.source import check_source, resolve_source
from clear_ray.errors import ConfigError
from clear_ray.eval.gold import evaluation_entry


@pytest.fixture(scope="module")
def synthetic_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synthetic.generate(tmp_path_factory.mktemp("synthetic") / "data", synthetic.MIN_PERSONS)


@pytest.fixture(scope="module")
def clear_copy(synthetic_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return therem_clear_copy(synthetic_dir, tmp_path_factory.mktemp("hub") / "CLEAR")


@pytest.fixture(scope="module")
def tofu(synthetic_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tofu_copy(synthetic_dir, tmp_path_factory.mktemp("hub") / "TOFU")


def config(tmp_path: Path, **values) -> Config:
    return Config().replace({"output_dir": str(tmp_path / "out"), **values})


def test_the_copy_has_the_hubs_configs_and_no_text_perturbed_one(clear_copy: Path) -> None:
    assert config_available(str(clear_copy), "default")
    assert not config_available(str(clear_copy), "forget10_tofu_perturbed")
    assert (clear_copy / "data" / "train-00000-of-00001.parquet").is_file()
    assert len(load_clear(str(clear_copy), "default")) == len(load_clear(str(clear_copy), "full"))


def test_without_tofu_the_text_task_is_left_out_in_one_line(
    clear_copy: Path, tmp_path: Path
) -> None:
    notes = check_source(config(tmp_path, **{"data.source": str(clear_copy)}))
    assert notes == [
        f"data: {clear_copy} has no forget10_tofu_perturbed (TOFU's perturbed QA): "
        "forget_text_perturbed is left out and the objective uses forget_captions; give "
        "--tofu DIR (a local copy of locuslab/TOFU) to include it"
    ]
    visual = config(tmp_path, **{"data.source": str(clear_copy), "data.modality": "visual"})
    assert len(check_source(visual)) == 1
    assert not (tmp_path / "out").exists()  # checked, nothing written


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"data.modality": "text"}, "--modality text is scored on forget_text_perturbed"),
        ({"eval.tasks": "forget_text_perturbed,forget_captions"}, "eval.tasks names"),
    ],
)
def test_what_needs_the_text_config_is_refused_before_training(
    clear_copy: Path, tmp_path: Path, values: dict, message: str
) -> None:
    with pytest.raises(ConfigError, match=message) as error:
        check_source(config(tmp_path, **{"data.source": str(clear_copy), **values}))
    assert "--tofu DIR" in str(error.value) and "\n" not in str(error.value)


def test_a_copy_missing_a_config_the_search_reads_is_refused_naming_it(
    synthetic_dir: Path, tmp_path: Path
) -> None:
    copy = therem_clear_copy(
        synthetic_dir, tmp_path / "CLEAR", drop=("real_world", "retain90+tofu")
    )
    with pytest.raises(ConfigError) as error:
        check_source(config(tmp_path, **{"data.source": str(copy)}))
    assert str(error.value) == (
        f"{copy} lacks real_world, retain90+tofu, which a search reads (not in its README.md)"
    )


def test_the_tune_cli_refuses_text_modality_on_the_copy_in_one_line(
    clear_copy: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    command = [sys.executable, "-m", "clear_ray.tune", "--data", str(clear_copy),
               "--modality", "text", "--output-dir", str(out)]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --modality text is scored on")
    assert not out.exists()


def test_evaluation_keys_cover_the_configs_the_copy_holds(clear_copy: Path, tmp_path: Path) -> None:
    """The key a search computed only after training (and failed on) before the fix."""
    entry = evaluation_entry(tmp_path, str(clear_copy), "forget10", EvalConfig())
    assert entry.parent == tmp_path and entry.name.startswith("forget10-")
    with_text = data_fingerprint(str(clear_copy), ["forget10", "forget10_tofu_perturbed"])
    assert with_text == data_fingerprint(str(clear_copy), ["forget10"])


def test_tofu_fills_the_text_config_through_a_cached_view(
    clear_copy: Path, tofu: Path, synthetic_dir: Path, tmp_path: Path
) -> None:
    cfg = config(tmp_path, **{"data.source": str(clear_copy), "data.tofu_source": str(tofu)})
    assert check_source(cfg) == []
    view = Path(resolve_source(cfg))
    assert view.parent == tmp_path / "out" / "data" and (view / MANIFEST).is_file()
    text = load_clear(str(view), "forget05_tofu_perturbed")
    expected = pq.read_table(
        synthetic_dir / "forget05_tofu_perturbed" / "train-00000-of-00001.parquet"
    )
    assert text["perturbed_answer"] == expected.column("perturbed_answer").to_pylist()
    assert text["question"] == expected.column("question").to_pylist()
    assert set(text["name"]) == {""}  # TOFU does not name the person
    # CLEAR's own configs read as in the copy: every cache key stays the copy's.
    configs = ["full+tofu", "forget10", "real_faces", "default"]
    assert data_fingerprint(str(view), configs) == data_fingerprint(str(clear_copy), configs)
    built = (view / MANIFEST).stat().st_mtime_ns
    assert resolve_source(cfg) == str(view)
    assert (view / MANIFEST).stat().st_mtime_ns == built  # reused


def test_tofu_is_refused_where_the_data_has_the_text_config_or_it_is_not_tofu(
    synthetic_dir: Path, clear_copy: Path, tofu: Path, tmp_path: Path
) -> None:
    for source in ("", str(synthetic_dir)):
        cfg = config(tmp_path, **{"data.source": source, "data.tofu_source": str(tofu)})
        with pytest.raises(ConfigError, match=r"data\.tofu_source"):
            check_source(cfg)
    cfg = config(tmp_path, **{"data.source": "me/clear-mirror", "data.tofu_source": str(tofu)})
    with pytest.raises(ConfigError, match="for a local --data directory, not me/clear-mirror"):
        check_source(cfg)
    for not_tofu, message in (
        (tmp_path, "not a local copy of locuslab/TOFU"),
        (clear_copy, r"has no column 'question' \(not TOFU's forget10_perturbed\)"),
    ):
        cfg = config(
            tmp_path, **{"data.source": str(clear_copy), "data.tofu_source": str(not_tofu)}
        )
        with pytest.raises(ConfigError, match=message):
            check_source(cfg)
