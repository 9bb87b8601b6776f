"""What pinned CPU kernels cost the whole demo: ``python -m clear_ray.tune --method dpo`` from an
empty folder, pinned (the default) and with ``--set search.pin_cpu_kernels=false``, in
interleaved runs.

bench/pin_cost.py times the model's compute alone; a search also spends time on Ray, imports,
data and evaluation bookkeeping that no pin touches, so its relative cost is smaller. Each run
builds its own references (their cache key names the pins), so a run is what a user's first
demo costs. Runs go pinned, unpinned, unpinned, pinned, … so that a drift of the machine's load
falls on both arms alike. Measures: wall seconds, and the CPU seconds the whole machine was
busy (``/proc/stat``), which is the demo's own CPU time on an otherwise quiet machine: run it
alone (Ray starts its workers at ``nice 15``, so niced background work still takes a share).
Two pinned runs must give the same leaderboard to the digit; the SHA-256 of each run's
``leaderboard_full.csv`` (trial ids left out) shows it.

    python bench/demo_pin_cost.py --work-dir /tmp/demo-pin-cost        # 2 pairs, appends raw lines
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from pin_cost import ARMS, caller_env_without_pins, search_pins

from clear_ray.provenance import machine_summary

RESULTS = Path(__file__).resolve().parent / "results" / "demo_pin_cost.jsonl"
DEMO = ("-m", "clear_ray.tune", "--method", "dpo")


def arm_order(runs: int) -> list[str]:
    """Pinned, unpinned, unpinned, pinned, … (ABBA): a linear drift costs both arms alike."""
    return [ARMS[(index + 1) // 2 % 2] for index in range(runs)]


def demo_command(arm: str, output_dir: Path) -> list[str]:
    unpin = ["--set", "search.pin_cpu_kernels=false"] if arm == "unpinned" else []
    return [sys.executable, *DEMO, "--output-dir", str(output_dir), *unpin]


def busy_cpu_seconds() -> float:
    """CPU seconds the machine has been busy since boot: every ``/proc/stat`` column but idle
    and iowait (user, nice, system, irq, softirq, steal)."""
    with open("/proc/stat") as handle:
        user, nice, system, _idle, _iowait, irq, softirq, steal = handle.readline().split()[1:9]
    busy = sum(int(ticks) for ticks in (user, nice, system, irq, softirq, steal))
    return busy / os.sysconf("SC_CLK_TCK")


def leaderboard_digest(output_dir: Path) -> str:
    """SHA-256 of the run's ``leaderboard_full.csv`` without its ``trial`` column: Ray Tune
    draws trial ids at random, every number is what must repeat."""
    (board,) = output_dir.glob("searches/*/leaderboard_full.csv")
    with board.open(newline="") as handle:
        rows = [{**row, "trial": ""} for row in csv.DictReader(handle)]
    return hashlib.sha256(json.dumps(rows).encode()).hexdigest()


def run_demo(arm: str, output_dir: Path) -> dict:
    """One demo in ``output_dir`` (which must not exist), its log beside it."""
    output_dir.mkdir(parents=True)
    load, cpu, wall = os.getloadavg()[0], busy_cpu_seconds(), time.perf_counter()
    with (output_dir / "demo.log").open("w") as log:
        subprocess.run(
            demo_command(arm, output_dir),
            env=caller_env_without_pins(),  # only the flag decides the arm
            stdout=log,
            stderr=subprocess.STDOUT,
            check=True,
        )
    return {
        "arm": arm,
        "wall_s": round(time.perf_counter() - wall, 1),
        "machine_cpu_s": round(busy_cpu_seconds() - cpu, 1),
        "load_1min_start": load,
        "load_1min_end": os.getloadavg()[0],
        "leaderboard_sha256": leaderboard_digest(output_dir),
        "output_dir": str(output_dir),
    }


def summary(lines: list[dict]) -> str:
    """Median of each arm's wall and CPU seconds, their ratio, and whether pinned runs agree."""
    parts = []
    for measure in ("wall_s", "machine_cpu_s"):
        medians = {
            arm: statistics.median(line[measure] for line in lines if line["arm"] == arm)
            for arm in ARMS
        }
        ratio = medians["pinned"] / medians["unpinned"]
        parts.append(f"{measure} median pinned {medians['pinned']:.0f} / unpinned "
                     f"{medians['unpinned']:.0f} = {ratio:.3f}")  # fmt: skip
    digests = {line["leaderboard_sha256"] for line in lines if line["arm"] == "pinned"}
    parts.append(f"pinned leaderboards {'identical' if len(digests) == 1 else 'DIFFER'}")
    return "; ".join(parts)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--work-dir", type=Path, required=True, help="a folder for the runs (run-<n>-<arm>/)"
    )
    parser.add_argument("--runs", type=int, default=4, help="demo runs, pinned first (ABBA)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="raw results, a JSON line a run")
    args = parser.parse_args(argv)
    if args.runs < 2:
        parser.error("--runs must be at least 2 (one run per arm)")
    common = {"machine": machine_summary(), "date": time.strftime("%Y-%m-%d"),
              "pins": search_pins(),
              "command": " ".join(["python", *DEMO])}  # fmt: skip
    lines = []
    for index, arm in enumerate(arm_order(args.runs)):
        line = {"run": index, **common, **run_demo(arm, args.work_dir / f"run-{index}-{arm}")}
        args.out.parent.mkdir(parents=True, exist_ok=True)
        with args.out.open("a") as handle:
            handle.write(json.dumps(line) + "\n")
        lines.append(line)
        print(f"[demo_pin_cost] run {index + 1}/{args.runs} {arm}: {line['wall_s']:.0f} s wall, "
              f"{line['machine_cpu_s']:.0f} s CPU", flush=True)  # fmt: skip
    print(summary(lines))


if __name__ == "__main__":
    main()
