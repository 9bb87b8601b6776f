"""An evaluation on disk: ``metrics.json`` and one parquet table of per-item values per task
(for MLflow and users)."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from clear_ray.eval.suite import TaskResult

ITEM_SCHEMA = pa.schema(
    [
        ("item_index", pa.int64()),
        ("nll_true", pa.float64()),
        ("nll_paraphrased", pa.float64()),
        ("nll_perturbed", pa.list_(pa.float64())),
        ("truth_ratio", pa.float64()),
        ("clear_truth_ratio", pa.float64()),
        ("rouge", pa.float64()),
        ("name", pa.string()),  # the row's person (forget tasks: which fold it fell in)
    ]
)


def write_item_tables(out: Path, tasks: dict[str, TaskResult]) -> list[Path]:
    """``<task>.parquet`` per task in ``out``; returns the paths written."""
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, result in tasks.items():
        path = out / f"{name}.parquet"
        pq.write_table(pa.Table.from_pydict(result.columns(), schema=ITEM_SCHEMA), path)
        paths.append(path)
    return paths


def write_outputs(out: Path, summary: dict, tasks: dict[str, TaskResult]) -> list[Path]:
    """``summary`` as ``metrics.json`` and each task's item table in ``out``; returns the
    paths written."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(summary, indent=2) + "\n")
    return [out / "metrics.json", *write_item_tables(out, tasks)]
