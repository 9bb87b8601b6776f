"""Sharded evaluation: ranks score strided shares, gather, and all get the unsharded result."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from clear_ray.config import EvalConfig
from clear_ray.data.clear import load_clear
from clear_ray.data.collate import Collator
from clear_ray.eval.reference import GoldReference, TaskReference
from clear_ray.eval.suite import EvalResult, Shard, evaluate, interleave, run_task
from clear_ray.eval.tasks import TASKS
from clear_ray.models.loading import load_checkpoint, save_checkpoint
from clear_ray.models.presets import get_preset
from clear_ray.net import free_port
from clear_ray.references.recipes import tokenizer_corpus

SPLIT = "forget10"
WORLD_SIZE = 2


def gold_reference(rows: int) -> GoldReference:
    """Made-up NLLs of Gold on each of the split's ``rows`` forget captions: paraphrase, three
    perturbed."""
    return GoldReference(
        {
            "forget_captions": TaskReference(
                list(np.linspace(1.0, 3.0, rows)),
                [[1.5, 2.0, 2.5 + i / rows] for i in range(rows)],
                list(range(rows)),
            )
        }
    )


def cases(source: str) -> list[tuple[EvalConfig, GoldReference | None]]:
    """(config, Gold's reference or None): every layout with generation gathered; an odd proxy
    size so the shares are uneven; a proxy of one row so one rank scores nothing."""
    captions = load_clear(source, f"{SPLIT}_perturbed").num_rows
    return [
        (
            EvalConfig(tasks="forget_captions,forget_text_qa,real_faces", max_new_tokens=6),
            gold_reference(captions),
        ),
        (EvalConfig(tasks="all", proxy_items=7), None),
        (EvalConfig(tasks="forget_face_naming,real_world", proxy_items=1), None),
    ]


# ----------------------------------------------------------------------------- merging


def test_interleave_undoes_a_strided_split() -> None:
    whole = list(range(5))
    assert interleave([whole[0::2], whole[1::2]]) == whole
    assert interleave([whole[r::3] for r in range(3)]) == whole
    assert interleave([[7], []]) == [7]


def test_interleave_rejects_parts_no_strided_split_produces() -> None:
    with pytest.raises(ValueError):
        interleave([[0], [1, 3, 5]])


def test_shard_takes_every_world_size_th_row_from_its_rank() -> None:
    rows = np.arange(10, 15)
    assert Shard().take(rows).tolist() == rows.tolist()
    assert Shard(1, 2).take(rows).tolist() == [11, 13]
    assert Shard(0, 3).take(rows).tolist() == [10, 13]


def test_shard_rank_must_lie_inside_the_world() -> None:
    with pytest.raises(ValueError, match="outside"):
        Shard(2, 2)


def test_a_sharded_task_without_a_matching_group_fails_before_any_work() -> None:
    with pytest.raises(RuntimeError, match="process group"):
        run_task(TASKS["real_world"], None, None, None, EvalConfig(), Shard(0, 2))


# ----------------------------------------------------------------------------- two ranks


@pytest.fixture(scope="module")
def checkpoint(synthetic_source: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny untrained model on disk, so both worker processes load the same weights."""
    model, processor = get_preset("tiny-llava").build_base(tokenizer_corpus(synthetic_source), 0)
    path = tmp_path_factory.mktemp("sharded_eval") / "model"
    save_checkpoint(model, processor, path)
    return path


def _evaluate_all(checkpoint: Path, source: str, shard: Shard) -> list[EvalResult]:
    model, processor = load_checkpoint(checkpoint)
    collator = Collator(processor)
    return [
        evaluate(model, collator, source, SPLIT, config, gold, shard=shard)
        for config, gold in cases(source)
    ]


def _worker(rank: int, port: int, checkpoint: Path, source: str, out: Path) -> None:
    torch.set_num_threads(1)  # two processes on a small CPU budget
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=WORLD_SIZE)
    try:
        results = _evaluate_all(checkpoint, source, Shard(rank, WORLD_SIZE))
        (out / f"rank{rank}.pkl").write_bytes(pickle.dumps(results))
    finally:
        dist.destroy_process_group()


def assert_same_evaluation(sharded: EvalResult, whole: EvalResult) -> None:
    """Same metrics, and per item the same values in the same order.

    A row's float32 scores move by a few ulps with its batch mates and the thread count (up
    to ~1.5e-6 measured here), hence a relative tolerance per item.
    """
    assert sharded.metrics.keys() == whole.metrics.keys()
    for key, value in whole.metrics.items():
        assert sharded.metrics[key] == pytest.approx(value, abs=1e-6), key
    assert sharded.tasks.keys() == whole.tasks.keys()
    for name, expected in whole.tasks.items():
        got = sharded.tasks[name].columns()
        for column, values in expected.columns().items():
            if column == "nll_perturbed":
                for row, expected_row in zip(got[column], values, strict=True):
                    np.testing.assert_allclose(row, expected_row, rtol=1e-5, err_msg=name)
            elif column == "item_index" or values[0] is None or isinstance(values[0], str):
                assert got[column] == values, (name, column)
            else:
                np.testing.assert_allclose(
                    got[column], values, rtol=1e-5, err_msg=f"{name} {column}"
                )


@pytest.mark.slow  # ~25 s: two worker processes load the model and evaluate three times
def test_two_rank_evaluation_equals_the_unsharded_one_on_every_rank(
    checkpoint: Path, synthetic_source: str, tmp_path: Path
) -> None:
    args = (free_port(), checkpoint, synthetic_source, tmp_path)
    mp.spawn(_worker, args=args, nprocs=WORLD_SIZE, join=True)
    whole = _evaluate_all(checkpoint, synthetic_source, Shard())

    gold_rows = load_clear(synthetic_source, f"{SPLIT}_perturbed").num_rows
    assert len(whole[0].tasks["forget_captions"].nll_true) == gold_rows
    assert whole[0].tasks["forget_captions"].rouge_recall is not None
    assert "forget_quality" in whole[0].metrics
    assert [len(result.nll_true) for result in whole[1].tasks.values()] == [7] * len(TASKS)
    for rank in range(WORLD_SIZE):
        sharded = pickle.loads((tmp_path / f"rank{rank}.pkl").read_bytes())
        for got, expected in zip(sharded, whole, strict=True):
            assert_same_evaluation(got, expected)
