"""Headroom: is there a configuration that forgets and keeps what Original knew?

Runs a few unlearning configurations (method + overrides) from the same Original with the bare
loop (:func:`clear_ray.train.loop.unlearn`, one process, no Tune), each epoch fully evaluated
against Gold, and reports per epoch CLEAR's table columns next to Original's and Gold's:
feasible = CLEAR Retain and Real both >= 0.9 × Original's; "closer to Gold" = the fraction of
Original's log forget quality gap to Gold (0) that was closed, and the fraction of the Forget
column's gap (Original − Gold) that was closed. A collapsed configuration (GA at a high
learning rate) shows the Real column dropping.

    python bench/headroom.py --out bench/results/headroom-<date>.json

Evaluations skip generation (``eval.generate=false``): CLEAR's Real/Retain/Forget columns and
forget quality are scored, not generated; only CLEAR's model utility would add ROUGE.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch
import torch.distributed as dist

from clear_ray.config import Config, resolve_config
from clear_ray.data.source import resolve_source
from clear_ray.eval.gold import reference_evaluation
from clear_ray.provenance import machine_summary
from clear_ray.references.prepare import reference_models
from clear_ray.runtime.backend import ensure_process_group
from clear_ray.train.inputs import TrialInputs
from clear_ray.train.loop import unlearn
from clear_ray.train.selection import Thresholds

COLUMNS = (
    "clear/real_metric",
    "clear/retain_metric",
    "clear/forget_metric",
    "clear/log_forget_quality",
    "clear/forget_quality_js",
    "log_forget_quality",
)
# label -> overrides; the defaults are the shipped method defaults at the tiny preset's scale.
CANDIDATES: dict[str, dict[str, object]] = {
    "ga lr 1e-2 (collapse)": {"method.name": "ga", "train.lr": 1e-2},
    "gd lr 1e-3 α 1": {"method.name": "gd", "train.lr": 1e-3},
    "npo lr 1e-3": {"method.name": "npo", "train.lr": 1e-3},
    "idk lr 1e-3": {"method.name": "idk", "train.lr": 1e-3},
    "dpo lr 1e-3": {"method.name": "dpo", "train.lr": 1e-3},
}
FEASIBLE = 0.9  # of Original's Retain and Real


def columns(metrics: dict[str, float]) -> dict[str, float]:
    return {name: metrics[name] for name in COLUMNS if name in metrics}


def judged(epoch: dict[str, float], original: dict[str, float], gold: dict[str, float]) -> dict:
    """Feasibility and how much of the way from Original to Gold an epoch went."""
    ratio = {
        name: epoch[f"clear/{name}_metric"] / original[f"clear/{name}_metric"]
        for name in ("retain", "real")
    }
    forget_gap = original["clear/forget_metric"] - gold["clear/forget_metric"]
    return {
        **columns(epoch),
        "retain_ratio": ratio["retain"],
        "real_ratio": ratio["real"],
        "feasible": min(ratio.values()) >= FEASIBLE,
        # Gold's own log FQ is 0: the share of Original's gap closed.
        "log_fq_gap_closed": 1
        - epoch["clear/log_forget_quality"] / original["clear/log_forget_quality"],
        "forget_gap_closed": (original["clear/forget_metric"] - epoch["clear/forget_metric"])
        / forget_gap,
    }


def run(cfg: Config, inputs: TrialInputs) -> list[dict[str, float]]:
    """``unlearn`` in this process, every epoch's metrics."""
    epochs: list[dict[str, float]] = []
    unlearn(cfg, inputs, 0, 1, lambda metrics, _: epochs.append(dict(metrics)))
    return epochs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output-dir", type=Path, default=Path("/tmp/clear_ray_headroom"))
    parser.add_argument("--out", type=Path, default=Path("bench/results/headroom.json"))
    parser.add_argument("--epochs", type=int, default=4, help="unlearning epochs per candidate")
    parser.add_argument(
        "--only", action="append", default=[], help="run only these candidate labels"
    )
    args = parser.parse_args()
    torch.set_num_threads(1)  # a trial worker's one CPU (search.cpus_per_worker)
    cfg = resolve_config(
        {
            "output_dir": str(args.output_dir.resolve()),
            "eval.generate": False,
            "train.epochs": args.epochs,
        }
    )
    started = time.perf_counter()
    source = resolve_source(cfg)
    models = reference_models(cfg, source, Path(cfg.output_dir) / "cache")
    split = cfg.data.forget_split
    gold = reference_evaluation(models.gold, source, split, cfg.eval)
    original = reference_evaluation(models.original, source, split, cfg.eval, gold.reference)
    references_s = time.perf_counter() - started
    print(f"Original {columns(original.metrics)}\nGold {columns(gold.metrics)}", flush=True)
    thresholds = Thresholds.from_search(cfg.search, original.metrics)
    inputs = TrialInputs(source, str(models.original), gold.reference, thresholds)
    results = {}
    ensure_process_group()  # one gloo group for every run (DeepSpeed caches groups)
    for label, overrides in CANDIDATES.items():
        if args.only and label not in args.only:
            continue
        started = time.perf_counter()
        epochs = run(cfg.replace(overrides), inputs)
        per_epoch = [judged(e, original.metrics, gold.metrics) for e in epochs]
        results[label] = {
            "overrides": overrides,
            "epochs": per_epoch,
            "wall_s": time.perf_counter() - started,
        }
        for number, epoch in enumerate(per_epoch, 1):
            print(
                f"{label} epoch {number}: real {epoch['real_ratio']:.2f}× retain "
                f"{epoch['retain_ratio']:.2f}× log FQ {epoch['clear/log_forget_quality']:.2f} "
                f"(gap closed {epoch['log_fq_gap_closed']:.2f}, forget gap closed "
                f"{epoch['forget_gap_closed']:.2f}) feasible {epoch['feasible']}",
                flush=True,
            )
    dist.destroy_process_group()
    record = {
        "original": columns(original.metrics),
        "gold": columns(gold.metrics),
        "config": {k: v for k, v in cfg.to_flat().items() if k.startswith(("pretrain.", "lora."))},
        "forget_split": split,
        "unlearning_epochs": args.epochs,
        "references_s": references_s,
        "candidates": results,
        "machine": f"{machine_summary()}, "
        f"torch {torch.__version__}, load average {os.getloadavg()[0]:.1f} at the end",
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2, default=float) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
