"""Quantization: does rounding the merged weights bring the forgotten back?

Catastrophic Failure of LLM Unlearning via Quantization (arXiv 2410.16454): unlearning moves
the weights a little, and rounding them to a coarse grid can land back on Original's values
(4-bit restored ~83% of the forgotten knowledge in their tests). Each scheme replaces every
``nn.Linear`` weight but the output head (bitsandbytes' default skip) by its quantized and
dequantized value and evaluates the forget tasks again, so the same scoring code serves both.

- ``int8``: symmetric per-output-channel int8, the weight-only scheme of torchao's
  ``int8_weight_only`` and LLM.int8's weights, in plain torch (any device, CPU included).
  ``torch.ao.quantization.quantize_dynamic`` runs here too but warns that it is deprecated,
  is per-tensor, and quantizes activations as well.
- ``nf4``: bitsandbytes' 4-bit NormalFloat with its default block of 64, the scheme of the
  paper's 4-bit results; bitsandbytes kernels need a GPU, so it is skipped on CPU.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from clear_ray.eval.suite import EvalResult
from clear_ray.models.lora import all_linear_names
from clear_ray.robust.context import FORGET_TASKS, CheckContext, CheckResult, prefixed

CHECK = "quantize"
REPORTED = ("forget_metric", "log_forget_quality", "forget_quality_js", "clear/forget_metric")


def int8_round_trip(weight: torch.Tensor) -> torch.Tensor:
    """``weight`` [out, in] through symmetric per-row int8: scale_r = max|w_r| / 127."""
    scale = weight.abs().amax(dim=1, keepdim=True).clamp(min=torch.finfo(weight.dtype).tiny) / 127
    return (torch.round(weight / scale).clamp(-127, 127) * scale).to(weight.dtype)


def nf4_round_trip(weight: torch.Tensor) -> torch.Tensor:
    """``weight`` through bitsandbytes' NF4 (blocks of 64, absmax per block), on the GPU."""
    import bitsandbytes.functional as bnb

    packed, state = bnb.quantize_4bit(weight.cuda(), blocksize=64, quant_type="nf4")
    return bnb.dequantize_4bit(packed, state).to(weight.device, weight.dtype)


@dataclass(frozen=True)
class Scheme:
    round_trip: Callable[[torch.Tensor], torch.Tensor]
    needs_gpu: bool


SCHEMES = {"int8": Scheme(int8_round_trip, False), "nf4": Scheme(nf4_round_trip, True)}


@torch.no_grad()
def quantize_weights(model: nn.Module, round_trip: Callable[[torch.Tensor], torch.Tensor]) -> int:
    """Replace every linear weight but the output head by its round trip; returns the count."""
    names = all_linear_names(model)
    for name in names:
        linear = model.get_submodule(name)
        linear.weight.copy_(round_trip(linear.weight))
    return len(names)


def skipped_because(scheme: Scheme) -> str | None:
    if scheme.needs_gpu and not torch.cuda.is_available():
        return "no GPU"
    if scheme.needs_gpu:
        try:
            import bitsandbytes  # noqa: F401
        except ImportError:
            return "bitsandbytes is not installed (pip install bitsandbytes)"
    return None


def nll_shift(before: EvalResult, after: EvalResult) -> float:
    """Mean |Δ true-target NLL| over every forget item: how far the rounding moved scores."""
    shifts = [
        np.abs(after.tasks[name].nll_true - result.nll_true)
        for name, result in before.tasks.items()
    ]
    return float(np.mean(np.concatenate(shifts)))


def check(ctx: CheckContext) -> CheckResult:
    data = ctx.data()
    config = ctx.eval_config(data, FORGET_TASKS[ctx.modality])
    gold = ctx.reference(ctx.gold, data, config, None).reference
    model, processor = ctx.load_unlearned()
    before = ctx.evaluate(model, processor, data, config, gold)
    values = {key: before.metrics[key] for key in REPORTED if key in before.metrics}
    items = {f"before/{task}": result.columns() for task, result in before.tasks.items()}
    notes = []
    original_weights = {k: v.clone() for k, v in model.state_dict().items()}
    for name, scheme in SCHEMES.items():
        reason = skipped_because(scheme)
        if reason:
            notes.append(f"{name}: skipped, {reason}")
            continue
        model.load_state_dict(original_weights)
        quantize_weights(model, scheme.round_trip)
        after = ctx.evaluate(model, processor, data, config, gold)
        values.update(
            {f"{name}/{key}": after.metrics[key] for key in REPORTED if key in after.metrics}
        )
        values[f"{name}/nll_shift"] = nll_shift(before, after)
        items.update({f"{name}/{task}": result.columns() for task, result in after.tasks.items()})
    return CheckResult(prefixed(CHECK, values), items, tuple(notes))
