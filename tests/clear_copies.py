"""Local copies of the hub datasets as a cluster keeps them, built from the synthetic data.

``therem_clear_copy`` is laid out like the therem/CLEAR hub repo (its README's ``dataset_info``
and ``configs:``, one ``<config>/train-00000-of-00001.parquet`` per config, ``default`` under
``data/``, a ``.gitattributes``), so it has no ``forgetNN_tofu_perturbed``: that config exists
only in clear_ray's synthetic data (the hub id reads it from locuslab/TOFU). ``tofu_copy`` is
laid out like locuslab/TOFU: one JSON-lines file per config at the top, named in its README.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import yaml

from clear_ray.data.schema import CONFIG_FEATURES, FORGET_SPLITS, TEXT_PERTURBED_SPLITS

SHARD = "train-00000-of-00001.parquet"
# therem/CLEAR's configs (its README, 21 of them): folder per config, `default` in data/.
CLEAR_FOLDERS = {
    "default": "data",
    **{c: c for c in CONFIG_FEATURES if c not in TEXT_PERTURBED_SPLITS},
}


def therem_clear_copy(synthetic: Path, dest: Path, drop: tuple[str, ...] = ()) -> Path:
    """A hub-layout copy of ``synthetic`` without its text-perturbed configs (nor ``drop``)."""
    info, configs = [], []
    for config, folder in CLEAR_FOLDERS.items():
        if config in drop:
            continue
        source = synthetic / ("full" if config == "default" else config) / SHARD
        (dest / folder).mkdir(parents=True)
        shutil.copyfile(source, dest / folder / SHARD)
        rows = pq.read_metadata(source).num_rows
        info.append({"config_name": config, "splits": [{"name": "train", "num_examples": rows}]})
        configs.append(
            {"config_name": config, "data_files": [{"split": "train", "path": f"{folder}/train-*"}]}
        )
    front = yaml.safe_dump({"dataset_info": info, "configs": configs}, sort_keys=False)
    (dest / "README.md").write_text(f"---\n{front}---\n\n# CLEAR (local copy)\n")
    (dest / ".gitattributes").write_text("*.parquet filter=lfs diff=lfs merge=lfs -text\n")
    return dest


def tofu_copy(synthetic: Path, dest: Path) -> Path:
    """TOFU's ``forgetNN_perturbed`` as locuslab/TOFU ships it: JSON lines, no ``name``, a
    ``paraphrased_question``; rows from the synthetic ``forgetNN_tofu_perturbed``."""
    dest.mkdir(parents=True)
    configs = []
    for split in FORGET_SPLITS:
        rows = pq.read_table(synthetic / f"{split}_tofu_perturbed" / SHARD).to_pylist()
        lines = [
            json.dumps(
                {
                    "question": r["question"],
                    "answer": r["answer"],
                    "paraphrased_answer": r["paraphrased_answer"],
                    "paraphrased_question": r["question"],
                    "perturbed_answer": r["perturbed_answer"],
                }
            )
            for r in rows
        ]
        (dest / f"{split}_perturbed.json").write_text("\n".join(lines) + "\n")
        configs.append(
            {"config_name": f"{split}_perturbed", "data_files": f"{split}_perturbed.json"}
        )
    front = yaml.safe_dump({"configs": configs}, sort_keys=False)
    (dest / "README.md").write_text(f"---\n{front}---\n\n# TOFU (local copy)\n")
    return dest
