"""Bring-your-own Original/Gold, and references built in Ray tasks, cached by content."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import pytest

from clear_ray.config import Config
from clear_ray.data.folds import REPORT, SELECTION, PersonFolds
from clear_ray.errors import ConfigError
from clear_ray.models.presets import get_preset
from clear_ray.references.checkpoints import brought_id, check_checkpoint, checkpoint_fingerprint
from clear_ray.references.prepare import evaluation_settings, prepare_references
from clear_ray.runtime.cluster import room_for, side_by_side
from clear_ray.runtime.store import Store

TINY = get_preset("tiny-llava")


def checkpoint(directory: Path, model_type: str = "llava") -> Path:
    directory.mkdir(parents=True)
    architecture = "LlavaForConditionalGeneration" if model_type == "llava" else "GPT2LMHeadModel"
    config = {"model_type": model_type, "architectures": [architecture]}
    (directory / "config.json").write_text(json.dumps(config))
    (directory / "model.safetensors").write_bytes(b"weights")
    return directory


def test_a_checkpoint_of_the_presets_architecture_and_a_hub_id_pass(tmp_path: Path) -> None:
    check_checkpoint(str(checkpoint(tmp_path / "ok")), TINY, "model.original")
    check_checkpoint("llava-hf/llava-1.5-7b-hf", TINY, "model.original")  # shape only, offline
    check_checkpoint("me/my-gold@0123abc", TINY, "model.gold")


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: str(d / "missing"), "neither a checkpoint directory nor a hub id"),
        (lambda d: (d / "empty").mkdir() or str(d / "empty"), "has no config.json"),
        (lambda d: str(checkpoint(d / "gpt", "gpt2")), "is a gpt2 model"),
        (lambda d: "not a hub id!", "neither a checkpoint directory nor a hub id"),
    ],
)
def test_a_missing_or_incompatible_checkpoint_is_refused(tmp_path: Path, make, message) -> None:
    with pytest.raises(ConfigError, match=message) as error:
        check_checkpoint(make(tmp_path), TINY, "model.original")
    assert str(error.value).startswith("model.original: ")


def test_tune_refuses_a_bad_original_with_one_line_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from clear_ray.cli.tune import main

    output = tmp_path / "out"
    code = main(["--original", str(tmp_path / "nope"), "--output-dir", str(output)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and err[0].startswith("error: --original, model.original: ")
    assert not output.exists()


def test_a_brought_checkpoint_that_fails_its_manifest_is_refused_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from clear_ray.cache import write_manifest
    from clear_ray.cli.tune import main

    directory = checkpoint(tmp_path / "original")
    check_checkpoint(str(directory), TINY, "model.original")  # no manifest: accepted
    write_manifest(directory)
    check_checkpoint(str(directory), TINY, "model.original")
    (directory / "model.safetensors").write_bytes(b"wei")  # cut short by a copy
    output = tmp_path / "out"
    code = main(["--original", str(directory), "--output-dir", str(output)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err == [
        f"error: --original, model.original: {directory} does not match its "
        "clear_ray-manifest.json (model.safetensors is 3 bytes, its manifest says 7); "
        "copy it again"
    ]
    assert not output.exists()


def test_a_corrupt_published_folder_is_removed_from_the_store_and_not_pulled(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from clear_ray.cache import write_manifest

    made, store = tmp_path / "node1" / "models", Store(str(tmp_path / "storage"))
    write_manifest(checkpoint(made / "m1"))
    store.push("models", made)
    published = tmp_path / "storage" / "references" / "models" / "m1"
    (published / "model.safetensors").write_bytes(b"")  # the upload was cut
    elsewhere = tmp_path / "node2" / "models"
    store.pull("models", elsewhere)
    assert not (elsewhere / "m1").exists()
    assert store.names("models") == []  # the next build publishes it again
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "model.safetensors is 0 bytes" in err[0]
    store.push("models", made)
    store.pull("models", elsewhere)
    assert (elsewhere / "m1" / "model.safetensors").read_bytes() == b"weights"


def test_the_synthetic_data_is_generated_again_when_a_file_was_cut(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from clear_ray.data import synthetic
    from clear_ray.data.source import resolve_source

    cfg = Config().replace(
        {"output_dir": str(tmp_path), "data.synthetic_persons": synthetic.MIN_PERSONS}
    )
    source = Path(resolve_source(cfg))
    parquet = source / "forget10" / synthetic.PARQUET_FILE
    whole = parquet.read_bytes()
    assert resolve_source(cfg) == str(source)  # intact: reused
    capsys.readouterr()
    parquet.write_bytes(whole[:100])
    assert resolve_source(cfg) == str(source)
    assert parquet.read_bytes() == whole
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0].startswith(f"[clear_ray] warning: synthetic data at {source} failed its check")
    assert f"forget10/{synthetic.PARQUET_FILE} is 100 bytes" in err[0]
    assert err[1] == f"[clear_ray] generating synthetic CLEAR data in {source}"


def test_the_fingerprint_follows_the_weights_and_the_hub_revision(tmp_path: Path) -> None:
    directory = checkpoint(tmp_path / "model")
    first = brought_id(str(directory))
    assert brought_id(str(directory)) == first  # stable
    (directory / "model.safetensors").write_bytes(b"other weights")
    assert brought_id(str(directory)) != first
    assert checkpoint_fingerprint("a/b") == {"hub": "a/b", "revision": "main"}
    assert brought_id("a/b@v1") != brought_id("a/b@v2")


def test_the_store_publishes_complete_folders_and_fills_another_nodes_cache(
    tmp_path: Path,
) -> None:
    made, store = tmp_path / "node1" / "models", Store(str(tmp_path / "storage"))
    (made / "m1").mkdir(parents=True)
    (made / "m1" / "sub").mkdir()
    (made / "m1" / "sub" / "w.bin").write_bytes(b"123")
    (made / "m3").mkdir()
    (made / "m3" / "reference.json").write_text("{}")  # files only: its folder is made too
    (made / ".m2-building").mkdir()  # a build under way is not published
    store.push("evaluations/x", made)  # a kind two levels down: parents are created
    assert sorted(store.names("evaluations/x")) == ["m1", "m3"]
    elsewhere = tmp_path / "node2" / "models"
    store.pull("evaluations/x", elsewhere)
    assert (elsewhere / "m1" / "sub" / "w.bin").read_bytes() == b"123"
    assert (elsewhere / "m3" / "reference.json").read_text() == "{}"
    assert Store("").names("models") == []


def test_a_cache_entry_made_meanwhile_by_another_task_is_kept(tmp_path: Path) -> None:
    from clear_ray.cache import cached_dir

    target = tmp_path / "entry"

    def build(out: Path) -> None:  # another task finishes the same entry first
        (out / "mine").write_text("1")
        target.mkdir()
        (target / "theirs").write_text("1")

    assert cached_dir(target, build) == target
    assert [p.name for p in tmp_path.iterdir()] == ["entry"]  # no staging folder left
    assert [p.name for p in target.iterdir()] == ["theirs"]


def test_side_by_side_runs_jobs_at_once_and_raises_an_error_once_all_have_ended() -> None:
    barrier = threading.Barrier(2, timeout=10)  # passes only if both jobs run at once
    assert side_by_side({"original": barrier.wait, "gold": barrier.wait}).keys() == {
        "original",
        "gold",
    }
    ended = []

    def slow() -> int:
        time.sleep(0.2)
        ended.append("slow")
        return 1

    def failing() -> None:
        raise ValueError("no room")

    with pytest.raises(ValueError, match="no room"):
        side_by_side({"slow": slow, "failing": failing})
    assert ended == ["slow"]  # the other job ran to its end, not abandoned


def test_jobs_go_side_by_side_only_when_every_worker_of_each_fits(monkeypatch) -> None:
    import ray

    cpu, gpu = Config().search, Config().replace({"search.gpus_per_trial": 1}).search
    for total, search, fits in (
        ({"CPU": 2.0}, cpu, True),
        ({"CPU": 1.5}, cpu, False),
        ({"CPU": 8.0, "GPU": 1.0}, gpu, False),  # the second would wait for the first's GPU
        ({"CPU": 8.0, "GPU": 2.0}, gpu, True),
    ):
        monkeypatch.setattr(ray, "cluster_resources", lambda total=total: total)
        monkeypatch.setattr(ray, "available_resources", lambda total=total: total)
        assert room_for(search, 2, wait_s=0) is fits, (total, search.gpus_per_trial)


def test_room_is_waited_for_while_an_ended_job_frees_its_resources(monkeypatch) -> None:
    import ray

    free = iter([{"CPU": 1.0}, {"CPU": 1.0}, {"CPU": 2.0}])  # the base's group, then released
    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 2.0})
    monkeypatch.setattr(ray, "available_resources", lambda: next(free))
    monkeypatch.setattr(time, "sleep", lambda seconds: None)
    assert room_for(Config().search, 2, wait_s=60)
    monkeypatch.setattr(ray, "available_resources", lambda: {"CPU": 1.0})  # held by another
    assert not room_for(Config().search, 2, wait_s=0)


@pytest.mark.parametrize(
    ("proxy_items", "generate", "report_fraction", "expected"),
    [
        (0, False, 0.0, [False]),  # per-epoch = full, no folds: one evaluation serves both
        (8, False, 0.0, [False, True]),  # a proxy per epoch
        (0, True, 0.0, [False, True]),  # greedy generation in the full evaluation only
        (0, False, 0.5, [False, True]),  # the selection fold per epoch, the report fold in full
    ],
)
def test_each_reference_gets_a_full_evaluation_apart_only_when_it_differs(
    proxy_items: int, generate: bool, report_fraction: float, expected: list[bool]
) -> None:
    """Two evaluations of one config would be two tasks racing on the same cache entry."""
    cfg = Config().replace({"eval.proxy_items": proxy_items, "eval.generate": generate})
    folds = PersonFolds(("a", "b"), ("c",), seed=0, report_fraction=report_fraction)
    settings = evaluation_settings(cfg, folds)
    assert [setting.full for setting in settings] == expected
    assert settings[0].fold == folds.fold(SELECTION)
    assert settings[-1].fold == folds.fold(REPORT if len(settings) == 2 else SELECTION)
    assert settings[-1].config.proxy_items == (proxy_items if len(settings) == 1 else 0)


@pytest.mark.slow
def test_brought_references_skip_the_finetune_and_are_evaluated_in_ray_tasks(
    ray_session, session_config: Config, synthetic_source: str, session_output: Path,
    tmp_path: Path,
) -> None:  # fmt: skip
    from clear_ray.references.prepare import reference_models

    models = reference_models(session_config, synthetic_source, session_output / "cache")
    cfg = session_config.replace(
        {
            "output_dir": str(tmp_path / "out"),
            "data.source": synthetic_source,
            "model.original": str(models.original),
            "model.gold": str(models.gold),
            "search.storage_path": str(tmp_path / "storage"),
            "eval.proxy_items": 3,  # proxy and full: two evaluations per model
        }
    )
    refs = prepare_references(cfg, print)
    assert not (tmp_path / "out" / "cache" / "models").exists()  # nothing finetuned
    assert refs.original_dir == str(models.original)
    assert refs.gold.metrics["log_forget_quality"] == pytest.approx(0.0)
    # the full evaluation, not the proxy: 3 items a side cannot go below log(2/C(6,3)) = -2.3
    assert refs.original_full.metrics["log_forget_quality"] < -3
    assert set(refs.ran_at) == {
        f"{role}{kind}_evaluation" for role in ("gold", "original") for kind in ("", "_full")
    }
    for ran in refs.ran_at.values():  # in a task with a trial worker's resources
        assert ran["pid"] != os.getpid()
        assert ran["resources"] == {"CPU": cfg.search.cpus_per_worker}
    assert Path(refs.gold.directory).is_relative_to(tmp_path / "out" / "cache" / "evaluations")
    # Published under the storage path, found again by a search whose node never made them.
    published = Store(cfg.search.storage_path).names(f"evaluations/{brought_id(models.gold)}")
    assert len(published) == 2  # proxy and full
    again = prepare_references(cfg.replace({"output_dir": str(tmp_path / "other")}), print)
    assert again.original.metrics == refs.original.metrics
    assert (tmp_path / "other" / "cache" / "evaluations").is_dir()


@pytest.mark.slow
def test_references_are_made_in_ray_tasks_unless_the_drivers_node_has_them(
    ray_session, session_config: Config, synthetic_source: str, session_output: Path,
    tmp_path: Path,
) -> None:  # fmt: skip
    """A driver whose node lacks the models (a fresh output dir) starts the finetune jobs, with
    a trial worker's resources; they find the models in the store, where another node published
    them. A second search on this node then starts no job and no task: each would cost a
    worker's start-up (~10-20 s on 2 cores) to find what the driver can see."""
    from clear_ray.references.prepare import reference_models
    from clear_ray.references.recipes import BASE, model_name

    models = reference_models(session_config, synthetic_source, session_output / "cache")
    storage = tmp_path / "storage"
    names = [model_name(session_config, synthetic_source, r) for r in (BASE, "original", "gold")]
    Store(str(storage)).push("models", session_output / "cache" / "models", names)
    out = tmp_path / "out"
    cfg = session_config.replace(
        {
            "data.source": synthetic_source,
            "output_dir": str(out),
            "search.storage_path": str(storage),
            "eval.proxy_items": 8,
        }
    )
    refs = prepare_references(cfg, print)
    for task in ("pretrained_base", "original_model", "gold_model"):
        ran = refs.ran_at[task]
        assert ran["pid"] != os.getpid() and ran["resources"] == {"CPU": 1.0}
    assert refs.original_dir == str(out / "cache" / "models" / models.original.name)
    assert (Path(refs.original_dir) / "config.json").read_bytes() == (
        models.original / "config.json"
    ).read_bytes()

    again = prepare_references(cfg, print)
    assert again.ran_at == {}
    assert again.original_dir == refs.original_dir
    assert again.original_full.metrics == refs.original_full.metrics
    assert again.gold.reference == refs.gold.reference
