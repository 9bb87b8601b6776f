"""One command that checks clear_ray's GPU path on a machine with a CUDA GPU, in minutes.

    pip install -e ".[gpu]"      # bitsandbytes, for the NF4 part
    python bench/gpu_check.py    # ~10 minutes at most on one H100; writes bench/results/

Four parts, each isolated: a part that fails records its error and the others still run.

- ``search``: a 1-trial, 1-epoch search of the tiny preset on the GPU (``--gpus-per-trial 1``:
  Ray Train's NCCL group, DeepSpeed in bf16), no confirm runs, no robustness checks.
- ``nf4``: bitsandbytes' NF4 round trip against the quantization check's plain-torch NF4
  (``robust/quantize.py`` ``nf4_round_trip``: the same 16 NormalFloat codes, blocks of 64,
  absmax per block), on a 4096 × 4096 bf16 weight.
- ``eval_throughput``: ``bench/eval_throughput.py --device cuda --preset llava7b-shape``.
- ``train_step_7b``: one DPO training step of the 7B-shaped model (``llava7b-shape``, random
  weights) under the 7B recipe: LoRA r8 on the language model, bf16, ZeRO-2, micro-batch 2,
  on a 1-rank NCCL group; its peak GPU memory beside ``clear_ray/memory.py``'s estimate.

On a machine without a CUDA GPU it says so in one line and exits 0.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
RESULTS = BENCH / "results"
SEARCH_TIMEOUT_S = 330
EVAL_TIMEOUT_S = 180
STEP_TOKENS = 704  # a padded row of the 7B model: 576 image tokens + 128 of text (memory.py)
ANSWER_TOKENS = 64
NF4_MIN_AGREEMENT = 0.999  # of the elements, equal to bitsandbytes' after the round trip

Part = Callable[[], dict]


def run_parts(parts: Sequence[tuple[str, Part]]) -> dict[str, dict]:
    """Each part's result with ``ok`` and ``seconds``; an exception is recorded, not raised."""
    results = {}
    for name, part in parts:
        print(f"gpu_check: {name} ...", flush=True)
        start = time.perf_counter()
        try:
            results[name] = {"ok": True, **part()}
        except Exception as error:  # any failure of a part is its result
            results[name] = {"ok": False, "error": f"{type(error).__name__}: {error}"}
        results[name]["seconds"] = round(time.perf_counter() - start, 1)
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    return results


def write_report(report: dict, directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"gpu_check-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(report, indent=2) + "\n")
    return path


def tail(text: str, lines: int = 15) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def run_command(command: list[str], timeout_s: float) -> subprocess.CompletedProcess:
    """``command`` in the repository with this checkout first on the path; a non-zero exit
    raises with the end of its output."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }
    done = subprocess.run(
        command, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout_s
    )
    if done.returncode != 0:
        raise RuntimeError(f"exit {done.returncode}: {tail(done.stdout + done.stderr)}")
    return done


def search_part(scratch: Path) -> dict:
    output = scratch / "search"
    command = [
        sys.executable, "-m", "clear_ray.tune", "--method", "dpo", "--num-samples", "1",
        "--epochs", "1", "--confirm-seeds", "0", "--robustness", "none",
        "--gpus-per-trial", "1", "--set", "train.precision=bf16", "--output-dir", str(output),
    ]  # fmt: skip
    done = run_command(command, SEARCH_TIMEOUT_S)
    trials = sorted(output.glob("searches/*/dpo/trials.csv"))
    if not trials:
        raise RuntimeError(f"no trials.csv under {output}/searches: {tail(done.stdout)}")
    return {
        "command": shlex.join(["python", *command[1:]]),
        "trials_csv": trials[0].read_text(),
        "output_tail": tail(done.stdout, 25),
    }


def bitsandbytes_nf4(weight: torch.Tensor) -> torch.Tensor:
    """``weight`` through bitsandbytes' NF4 (its default block of 64) on the GPU."""
    import bitsandbytes.functional as bnb

    packed, state = bnb.quantize_4bit(weight.cuda(), blocksize=64, quant_type="nf4")
    return bnb.dequantize_4bit(packed, state).to(weight.device, weight.dtype)


def compare_nf4(emulated: torch.Tensor, library: torch.Tensor) -> dict:
    """How far bitsandbytes' round trip is from the emulation; fails below the agreement."""
    equal = (emulated == library).float().mean().item()
    result = {
        "elements": emulated.numel(),
        "equal_fraction": equal,
        "max_abs_difference": (emulated.float() - library.float()).abs().max().item(),
    }
    if equal < NF4_MIN_AGREEMENT:
        raise AssertionError(f"bitsandbytes and the emulation agree on {equal:.5f}: {result}")
    return result


def nf4_part() -> dict:
    from clear_ray.robust.quantize import nf4_round_trip

    generator = torch.Generator().manual_seed(0)
    weight = (torch.randn(4096, 4096, generator=generator) * 0.02).to(torch.bfloat16)
    return compare_nf4(nf4_round_trip(weight), bitsandbytes_nf4(weight))


def eval_throughput_part(scratch: Path) -> dict:
    out = scratch / "eval_throughput.json"
    command = [
        sys.executable, str(BENCH / "eval_throughput.py"), "--device", "cuda",
        "--preset", "llava7b-shape", "--items", "32", "--repeats", "2", "--out", str(out),
    ]  # fmt: skip
    run_command(command, EVAL_TIMEOUT_S)
    return json.loads(out.read_text())


def nccl_group() -> None:
    """A 1-rank NCCL group for the DeepSpeed engine (a trial's workers get theirs from Ray)."""
    import torch.distributed as dist

    from clear_ray.net import free_port

    if dist.is_initialized():
        return
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port()), RANK="0", WORLD_SIZE="1"
    )
    os.environ.setdefault("LOCAL_RANK", "0")
    torch.cuda.set_device(0)
    dist.init_process_group("nccl", rank=0, world_size=1)


def step_batch(config, rows: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """``rows`` padded rows of STEP_TOKENS: BOS, the image's tokens, random text; the last
    ANSWER_TOKENS are the answer (labelled)."""
    image_tokens = config.image_seq_length
    text = torch.randint(4, config.text_config.vocab_size, (rows, STEP_TOKENS - 1 - image_tokens),
                         generator=generator)  # fmt: skip
    ids = torch.cat(
        [
            torch.full((rows, 1), config.text_config.bos_token_id),
            torch.full((rows, image_tokens), config.image_token_index),
            text,
        ],
        dim=1,
    )
    labels = torch.full_like(ids, -100)
    labels[:, -ANSWER_TOKENS:] = ids[:, -ANSWER_TOKENS:]
    side = config.vision_config.image_size
    return {
        "input_ids": ids.cuda(),
        "attention_mask": torch.ones_like(ids).cuda(),
        "labels": labels.cuda(),
        "pixel_values": torch.randn(rows, 3, side, side, generator=generator)
        .to(torch.bfloat16)
        .cuda(),
    }


def train_step_7b_part() -> dict:
    from eval_throughput import llava15_7b_config
    from transformers import LlavaForConditionalGeneration

    from clear_ray.config import resolve_config
    from clear_ray.memory import GIB, estimate_trial_memory
    from clear_ray.methods import get_method
    from clear_ray.models.lora import attach_lora
    from clear_ray.models.presets import get_preset
    from clear_ray.models.shapes import LLAVA_7B_SHAPE
    from clear_ray.models.tiny import train_tokenizer
    from clear_ray.train.deepspeed import deepspeed_config, import_deepspeed
    from clear_ray.train.step import training_step

    cfg = resolve_config({"model.preset": "llava-1.5-7b", "method.name": "dpo"})
    method = get_method(cfg.method.name)
    nccl_group()
    tokenizer = train_tokenizer(["A person in a park reads a book by the sea."] * 8)
    config = llava15_7b_config(tokenizer)
    torch.cuda.reset_peak_memory_stats()
    torch.manual_seed(0)
    with torch.device("cuda"):
        model = LlavaForConditionalGeneration._from_config(config, dtype=torch.bfloat16)
    model = attach_lora(model, cfg.lora, get_preset(cfg.model.preset).lora_target_modules)
    engine, *_ = import_deepspeed().initialize(
        model=model,
        model_parameters=[p for p in model.parameters() if p.requires_grad],
        config=deepspeed_config(cfg.train),
    )
    engine.train()
    generator = torch.Generator().manual_seed(0)
    batches = {view: step_batch(config, cfg.train.batch_size, generator) for view in method.views}
    torch.cuda.synchronize()
    start = time.perf_counter()
    logs = training_step(engine, method, batches, cfg, None)
    torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated()
    estimate = estimate_trial_memory(
        LLAVA_7B_SHAPE,
        cfg.train.precision,
        cfg.lora.r,
        cfg.train.zero_stage,
        1,
        cfg.train.batch_size,
        len(method.views),
        STEP_TOKENS,
    )
    del engine, model, batches
    return {
        "recipe": {
            key: value
            for key, value in cfg.to_flat().items()
            if key.startswith(("train.", "lora.")) or key == "method.name"
        },
        "tokens_per_row": STEP_TOKENS,
        "step_seconds": round(seconds, 2),
        "losses": logs,
        "peak_allocated_gib": round(peak / GIB, 2),
        "peak_reserved_gib": round(torch.cuda.max_memory_reserved() / GIB, 2),
        "estimate_gib": {
            field.name: round(getattr(estimate, field.name) / GIB, 2)
            for field in dataclasses.fields(estimate)
        }
        | {"total": round(estimate.total / GIB, 2)},
        "peak_over_estimate": round(peak / estimate.total, 3),
    }


def parts(scratch: Path) -> list[tuple[str, Part]]:
    """In this order: the subprocesses first, the 7B step (the largest memory) last."""
    return [
        ("search", lambda: search_part(scratch)),
        ("eval_throughput", lambda: eval_throughput_part(scratch)),
        ("nf4", nf4_part),
        ("train_step_7b", train_step_7b_part),
    ]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out-dir", type=Path, default=RESULTS, help="where the JSON goes")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("gpu_check: no CUDA GPU on this machine (torch.cuda.is_available() is False)")
        return 0
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="gpu_check-") as scratch:
        results = run_parts(parts(Path(scratch)))
    report = {
        "device": torch.cuda.get_device_name(0),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "platform": platform.platform(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(started)),
        "seconds": round(time.time() - started, 1),
        "parts": results,
    }
    path = write_report(report, args.out_dir)
    for name, result in results.items():
        state = "ok" if result["ok"] else f"FAILED ({result['error'][:200]})"
        print(f"gpu_check: {name}: {state}, {result['seconds']} s")
    print(f"gpu_check: {report['seconds']} s in all -> {path}")
    return 0 if all(result["ok"] for result in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
