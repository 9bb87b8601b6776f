"""Do pinned kernels give the same bits on another CPU type? The tiny workload, pinned and
unpinned, on this machine's CPU and on CPU types that QEMU emulates, compared bit for bit.

``search.pin_cpu_kernels`` (clear_ray/kernels.py) claims that a CPU search gives the same
numbers on any x86-64 CPU with AVX2. Checking that needs a second CPU type; where there is one
machine, QEMU's user mode (``qemu-x86_64 -cpu MODEL``) runs the same Python, torch, numpy and
scipy under another CPU's CPUID, so every library dispatches as it would on that CPU: another
vendor (MKL takes other paths on Intel than on AMD), no AVX-512. QEMU's TCG emulates each
instruction's IEEE result, so what differs between the runs is which instructions the
libraries chose, with one exception: the estimate instructions (``rsqrtps``, ``rcpps``), which
QEMU computes exactly and a CPU to 12 bits of its own design. A kernel that uses them differs
under QEMU from every real CPU; for it only the emulated CPUs compared with each other count.
QEMU 7.2 emulates AVX2 at most, which is the instruction set the pin claims to cover.

Each run is a fresh process with its arm's environment (bench/pin_cost.py's ``arm_env``): it
scores a batch, trains ``--steps`` AdamW steps of the tiny model (bench/tiny_workload.py) and
scores again, then computes the metrics of clear_ray/eval/metrics.py on those NLLs (log truth
ratios, KS forget quality, W1) with numpy and scipy. A SHA-256 of each stage's bits (losses,
parameters, NLLs, metrics) and of single kernels on seeded inputs locates where two runs part.
The unpinned arm is the check's control: on a CPU with AVX-512 it should part from the emulated
AVX2 CPUs, or the check could not fail; ``pinned-mkl-avx2`` is the pin as it was until
2026-12-07.

    python bench/cross_cpu.py                         # appends to bench/results/cross_cpu.jsonl
    python bench/cross_cpu.py --cpus Haswell --steps 3  # a quick look

Needs ``qemu-x86_64`` (Debian: ``apt install qemu-user``); an emulated run takes minutes.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

from pin_cost import arm_env
from tiny_workload import tiny_workload

from clear_ray.provenance import machine_summary

RESULTS = Path(__file__).resolve().parent / "results" / "cross_cpu.jsonl"
NATIVE = "native"
# The pinned and unpinned arms of bench/pin_cost.py, and the pin as it was until 2026-12-07
# (MKL's AVX2 branch, which MKL honours on Intel CPUs only).
ARMS = {
    "pinned": lambda: arm_env("pinned"),
    "unpinned": lambda: arm_env("unpinned"),
    "pinned-mkl-avx2": lambda: {**arm_env("pinned"), "MKL_CBWR": "AVX2"},
}
STAGES = ("losses", "parameters", "nll", "metrics")
PARAPHRASED, PERTURBED = 8, 3  # a scoring pass's 32 NLLs as 8 items with 3 distractors each


def digest(*arrays: object) -> str:
    """SHA-256 of the arrays' bytes, in order (numpy arrays or torch tensors)."""
    import numpy as np

    hasher = hashlib.sha256()
    for array in arrays:
        values = array.detach().contiguous().numpy() if hasattr(array, "detach") else array
        hasher.update(np.ascontiguousarray(values).tobytes())
    return hasher.hexdigest()


def op_digests() -> dict[str, str]:
    """The bits of single kernels on seeded inputs at the tiny model's sizes, to say which
    kernel parts two runs: BLAS (``linear``, ``bmm``), MKL's vector maths (``exp``), attention,
    the element-wise and reduction kernels a step runs, and ``sqrt`` (AdamW's denominator)."""
    import torch
    import torch.nn.functional as F

    generator = torch.Generator().manual_seed(0)

    def randn(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=generator)

    q, k, v = randn(8, 4, 17, 16), randn(8, 4, 17, 16), randn(8, 4, 17, 16)
    x, weight, hidden = randn(8, 17, 64), randn(128, 64), randn(136, 64)
    positive = x.square() * 1e-7
    ops = {
        "linear": lambda: F.linear(hidden, weight),
        "bmm": lambda: q @ k.transpose(-1, -2),
        "exp": lambda: torch.exp(x),
        "attention": lambda: F.scaled_dot_product_attention(q, k, v),
        "softmax": lambda: torch.softmax(x, -1),
        "log_softmax": lambda: torch.log_softmax(x, -1),
        "layer_norm": lambda: F.layer_norm(x, (64,)),
        "gelu": lambda: F.gelu(x),
        "silu": lambda: F.silu(x),
        "sum": lambda: x.sum(-1),
        "sqrt": lambda: torch.sqrt(positive),
    }
    return {name: digest(op()) for name, op in ops.items()}


def measure(steps: int) -> dict:
    """In this process: the workload's bits, stage by stage, and the CPU that torch sees."""
    import numpy as np
    import torch

    from clear_ray.eval import metrics

    workload = tiny_workload(seed=0)
    before = workload.score_pass().double().numpy()
    losses = np.array([workload.train_step() for _ in range(steps)])
    after = workload.score_pass().double().numpy()

    def log_tr(nll: np.ndarray) -> np.ndarray:
        items = nll[: PARAPHRASED * (1 + PERTURBED)]
        perturbed = items[PARAPHRASED:].reshape(PARAPHRASED, PERTURBED)
        return metrics.log_truth_ratios(items[:PARAPHRASED], perturbed)

    model, gold = log_tr(after), log_tr(before)
    values = {
        "forget_quality": metrics.forget_quality(np.exp(model), np.exp(gold)),
        "forget_distance": metrics.forget_distance(model, gold),
        "truth_ratio_score": metrics.truth_ratio_score(np.exp(model), forget=True),
    }
    return {
        "ops": op_digests(),
        "capability": torch.backends.cpu.get_cpu_capability(),
        "avx512": bool(torch.cpu._is_avx512_supported()),
        "digests": {
            "losses": digest(losses),
            "parameters": digest(*workload.model.parameters()),
            "nll": digest(before, after),
            "metrics": digest(np.array(list(values.values()))),
        },
        "losses": [loss.hex() for loss in losses.tolist()],
        "metrics": {name: value.hex() for name, value in values.items()},
    }


def run(cpu: str, arm: str, steps: int) -> dict:
    """One run in a fresh process: natively, or under ``qemu-x86_64 -cpu <cpu>``."""
    emulator = [] if cpu == NATIVE else [shutil.which("qemu-x86_64") or "qemu-x86_64", "-cpu", cpu]
    command = [*emulator, sys.executable, __file__, "--measure", "--steps", str(steps)]
    started = time.perf_counter()
    result = subprocess.run(command, env=ARMS[arm](), capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed: {result.stderr.strip()[-400:]}")
    measured = json.loads(result.stdout.strip().splitlines()[-1])
    return {"cpu": cpu, "arm": arm, "wall_s": round(time.perf_counter() - started, 1), **measured}


def first_difference(line: dict, reference: dict) -> str | None:
    """The first stage whose bits differ between two runs, or None when all agree."""
    for stage in STAGES:
        if line["digests"][stage] != reference["digests"][stage]:
            return stage
    return None


def differing_ops(line: dict, reference: dict) -> list[str]:
    """The single kernels whose bits differ between two runs."""
    return [name for name, bits in reference["ops"].items() if line["ops"].get(name) != bits]


def compared(line: dict, reference: dict) -> str:
    """ "the same bits", or the first stage that differs and the kernels that do."""
    stage = first_difference(line, reference)
    where = "the same bits" if stage is None else f"other bits from the {stage} on"
    ops = differing_ops(line, reference)
    return where + (f", other kernels: {', '.join(ops)}" if ops else "")


def summary(lines: list[dict]) -> list[str]:
    """Per arm: each emulated CPU against this machine's CPU, then the emulated CPUs against the
    first of them (they share QEMU's exact estimate instructions, so they differ only where
    the libraries choose other code for another CPU). The unpinned arm is the control: it
    should differ, or the check could not have failed."""
    out = []
    for arm in ARMS:
        runs = [line for line in lines if line["arm"] == arm]
        natives = [line for line in runs if line["cpu"] == NATIVE]
        if not natives:
            continue
        reference = natives[-1]
        emulated = [line for line in runs if line["cpu"] != NATIVE]
        parts = [f"{line['cpu']} ({line['capability']}): {compared(line, reference)}"
                 for line in emulated]  # fmt: skip
        parts += [f"{line['cpu']} against {emulated[0]['cpu']}: {compared(line, emulated[0])}"
                  for line in emulated[1:]]  # fmt: skip
        text = "; ".join(parts) or "no other CPU type ran"
        out.append(f"{arm} ({reference['capability']} here): {text}")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python bench/cross_cpu.py",
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--cpus", default="Haswell,EPYC-Rome", help="QEMU CPU models (qemu-x86_64 -cpu help)"
    )
    parser.add_argument("--steps", type=int, default=20, help="training steps per run")
    parser.add_argument(
        "--arms", default="pinned,unpinned", help=f"comma-separated, of {', '.join(ARMS)}"
    )
    parser.add_argument("--out", type=Path, default=RESULTS, help="raw results, a JSON line a run")
    # One run's measurement, in the process that run() starts with the arm's environment.
    parser.add_argument("--measure", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.measure:
        print(json.dumps(measure(args.steps)))
        return 0
    cpus = [cpu for cpu in args.cpus.split(",") if cpu]
    if cpus and shutil.which("qemu-x86_64") is None:
        parser.exit(2, "error: qemu-x86_64 not found (Debian: apt install qemu-user)\n")
    if args.steps < 1:
        parser.exit(2, "error: --steps must be at least 1\n")
    arms = [arm for arm in args.arms.split(",") if arm]
    if not arms or set(arms) - set(ARMS):
        parser.exit(2, f"error: --arms takes {', '.join(ARMS)}, not {args.arms!r}\n")
    context = {"date": time.strftime("%Y-%m-%d"), "machine": machine_summary(), "steps": args.steps}
    lines = []
    for cpu in [NATIVE, *cpus]:
        for arm in arms:
            line = {**context, **run(cpu, arm, args.steps)}
            args.out.parent.mkdir(parents=True, exist_ok=True)
            with args.out.open("a") as handle:
                handle.write(json.dumps(line) + "\n")
            lines.append(line)
            print(f"[cross_cpu] {cpu}, {arm}: {line['capability']}, {line['wall_s']} s", flush=True)
    print("\n".join(summary(lines)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
