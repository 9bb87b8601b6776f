"""What pinned CPU kernels cost: the tiny model's training steps and scoring passes, pinned and
unpinned, in fresh processes run in interleaved pairs.

``search.pin_cpu_kernels`` (clear_ray/kernels.py) caps ATen and oneDNN at AVX2 and puts MKL on its
COMPATIBLE branch so that a CPU search gives the same numbers on any x86-64 machine with AVX2. On
a CPU with AVX-512 that may cost speed. Each library reads its variable when it first
dispatches, so each measurement is a fresh process with the environment of its arm; pairs
alternate which arm runs first, so drift of the machine's load falls on both arms alike.
Process CPU time (``time.process_time``) is the primary measure: on a shared machine it moves
far less with other work than wall time does. bench/demo_pin_cost.py times the whole demo.

The workload is bench/tiny_workload.py, the tiny preset at the demo's shapes: LoRA-free training
steps of the whole model (AdamW, batch 8 of image + 48 text tokens) and no-grad scoring passes
(batch 32, per-sequence NLL). It is the compute inside a demo, not the demo: Ray, imports and
evaluation bookkeeping are not pinned and cost the same in both arms, so the demo's relative
cost is smaller than this.

    python bench/pin_cost.py                     # 5 pairs, appends to bench/results/pin_cost.jsonl
    python bench/pin_cost.py --pairs 1 --steps 20  # a quick look
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from tiny_workload import tiny_workload

from clear_ray.config import SearchConfig
from clear_ray.kernels import pinned_settings
from clear_ray.provenance import machine_summary

RESULTS = Path(__file__).resolve().parent / "results" / "pin_cost.jsonl"
ARMS = ("pinned", "unpinned")


THREADS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")


def search_pins() -> dict[str, str]:
    """The variables and values a pinned CPU search sets (clear_ray/kernels.py)."""
    return pinned_settings(SearchConfig(pin_cpu_kernels=True))


def caller_env_without_pins() -> dict[str, str]:
    """The caller's environment less every variable the pin sets: no arm inherits the
    caller's own pin."""
    pins = search_pins()
    return {name: value for name, value in os.environ.items() if name not in pins}


def arm_env(arm: str) -> dict[str, str]:
    """The environment of one measurement: the search's pin settings, or only their thread
    counts. Ray gives every worker ``OMP_NUM_THREADS`` = its CPUs whether pinned or not, so
    the unpinned arm keeps one thread too; what differs is the instruction sets (a variable
    of the caller's own environment is dropped in both arms)."""
    pinned = search_pins()
    kept = pinned if arm == "pinned" else {name: pinned[name] for name in THREADS}
    return {**caller_env_without_pins(), **kept}


def measure(steps: int, passes: int) -> dict[str, float]:
    """In this process: CPU and wall seconds of ``steps`` training steps and ``passes``
    scoring passes of the tiny model, after one untimed warm-up of each."""
    import torch

    workload = tiny_workload(seed=0)
    out = {
        "capability": torch.backends.cpu.get_cpu_capability(),
        "threads": torch.get_num_threads(),
    }
    for name, work, count in (
        ("train", workload.train_step, steps),
        ("score", workload.score_pass, passes),
    ):
        work()  # warm-up: first dispatch, allocator
        cpu, wall = time.process_time(), time.perf_counter()
        for _ in range(count):
            work()
        out[f"{name}_cpu_s"] = time.process_time() - cpu
        out[f"{name}_wall_s"] = time.perf_counter() - wall
    return out


def run_arm(arm: str, steps: int, passes: int) -> dict:
    counts = ["--steps", str(steps), "--passes", str(passes)]
    command = [sys.executable, __file__, "--measure", *counts]
    result = subprocess.run(command, env=arm_env(arm), capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def summary(lines: list[dict]) -> str:
    """Median pinned/unpinned ratio of CPU seconds per phase, over the pairs."""
    parts = []
    for phase in ("train", "score"):
        ratios = [
            line["pinned"][f"{phase}_cpu_s"] / line["unpinned"][f"{phase}_cpu_s"] for line in lines
        ]
        median, low, high = statistics.median(ratios), min(ratios), max(ratios)
        parts.append(f"{phase}: pinned/unpinned CPU time median {median:.3f} "
                     f"(range {low:.3f}-{high:.3f}, {len(ratios)} pairs)")  # fmt: skip
    return "; ".join(parts)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=5, help="interleaved pinned/unpinned pairs")
    parser.add_argument("--steps", type=int, default=200, help="training steps per measurement")
    parser.add_argument("--passes", type=int, default=200, help="scoring passes per measurement")
    parser.add_argument(
        "--out", type=Path, default=RESULTS, help="raw results, one JSON line a pair"
    )
    # One arm's measurement, in the process that run_arm starts with the arm's environment.
    parser.add_argument("--measure", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.measure:
        print(json.dumps(measure(args.steps, args.passes)))
        return
    machine = machine_summary()
    lines = []
    for pair in range(args.pairs):
        order = ARMS if pair % 2 == 0 else ARMS[::-1]
        line = {"pair": pair, "first": order[0], "steps": args.steps, "passes": args.passes,
                "machine": machine, "date": time.strftime("%Y-%m-%d"),
                "pins": search_pins(),
                "load_1min": os.getloadavg()[0]}  # fmt: skip
        for arm in order:
            line[arm] = run_arm(arm, args.steps, args.passes)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        with args.out.open("a") as handle:
            handle.write(json.dumps(line) + "\n")
        lines.append(line)
        print(f"[pin_cost] pair {pair + 1}/{args.pairs}: " + summary([line]), flush=True)
    print(summary(lines))


if __name__ == "__main__":
    main()
