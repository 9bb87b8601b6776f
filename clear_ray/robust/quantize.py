"""Quantization: does rounding the merged weights bring the forgotten back?

Catastrophic Failure of LLM Unlearning via Quantization (arXiv 2410.16454): unlearning moves
the weights a little, and rounding them to a coarse grid can land back on Original's values
(4-bit restored ~83% of the forgotten knowledge in their tests; 8-bit stayed close to full
precision). Each scheme replaces every ``nn.Linear`` weight but the output head
(bitsandbytes' default skip) by its quantized and dequantized value, in plain torch on any
device (CPU included), and evaluates the forget tasks again:

- ``int8``: symmetric per-output-channel int8, the weight-only scheme of torchao's
  ``int8_weight_only`` and LLM.int8's weights.
- ``nf4``: 4-bit NormalFloat as bitsandbytes' ``quantize_4bit(quant_type="nf4")`` with its
  default block of 64 (QLoRA, arXiv 2305.14314): the paper's 4-bit scheme.

Gold and Original go through the same rounding, so each scheme's forget quality compares
with rounded Gold and its knowledge is placed between rounded Gold and rounded Original (a
rounding that shifts every model's NLLs is not a leak). ``same_as_original`` counts the
mechanism itself: of the weights the unlearning moved, the share whose rounded value is
Original's rounded value.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from clear_ray.config import EvalConfig
from clear_ray.eval.suite import EvalResult
from clear_ray.models.lora import all_linear_names
from clear_ray.robust.checks import register_check
from clear_ray.robust.context import (
    FORGET_TASKS,
    MIN_GAP,
    CheckContext,
    CheckResult,
    PersonData,
    Scored,
    knowledge,
    prefixed,
    worst_knowledge,
)

CHECK = "quantize"
REPORTED = ("forget_metric", "log_forget_quality", "forget_quality_js", "clear/forget_metric")
METRIC = "forget_metric"  # the forget tasks' harmonic mean of prob and truth ratio
# bitsandbytes' NF4 code book (bitsandbytes/functional.py, get_4bit_type("nf4")): the 16
# quantiles of N(0, 1) scaled to [-1, 1] of QLoRA (arXiv 2305.14314, appendix E).
NF4_CODES = (
    -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453,
    -0.28444138169288635, -0.18477343022823334, -0.09105003625154495, 0.0,
    0.07958029955625534, 0.16093020141124725, 0.24611230194568634, 0.33791524171829224,
    0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0,
)  # fmt: skip
NF4_BLOCK = 64  # bitsandbytes' default blocksize for quantize_4bit


def int8_round_trip(weight: torch.Tensor) -> torch.Tensor:
    """``weight`` [out, in] through symmetric per-row int8: scale_r = max|w_r| / 127."""
    scale = weight.abs().amax(dim=1, keepdim=True).clamp(min=torch.finfo(weight.dtype).tiny) / 127
    return (torch.round(weight / scale).clamp(-127, 127) * scale).to(weight.dtype)


def nf4_round_trip(weight: torch.Tensor) -> torch.Tensor:
    """``weight`` through NF4: per block of 64 consecutive elements (row-major, the last one
    short) scale by the block's absmax, take the nearest code, scale back (in fp32, the
    dtype of bitsandbytes' absmax); the result in ``weight``'s dtype."""
    flat = weight.detach().float().reshape(-1)
    padded = nn.functional.pad(flat, (0, -flat.numel() % NF4_BLOCK))  # zeros: same absmax
    blocks = padded.reshape(-1, NF4_BLOCK)
    absmax = blocks.abs().amax(dim=1, keepdim=True)
    scale = torch.where(absmax > 0, absmax, torch.ones_like(absmax))
    codes = torch.tensor(NF4_CODES, device=weight.device)
    restored = torch.empty_like(blocks)
    for row in range(0, len(blocks), 4096):  # bounded memory: [rows, 64, 16] distances
        part = blocks[row : row + 4096] / scale[row : row + 4096]
        nearest = (part.unsqueeze(-1) - codes).abs().argmin(dim=-1)
        restored[row : row + 4096] = codes[nearest] * absmax[row : row + 4096]
    return restored.reshape(-1)[: flat.numel()].reshape(weight.shape).to(weight.dtype)


SCHEMES: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "int8": int8_round_trip,
    "nf4": nf4_round_trip,
}


def linear_weights(model: nn.Module) -> dict[str, torch.Tensor]:
    """A copy on the CPU (a 7B model's copies would not fit beside it on its GPU) of every
    weight the schemes round: each ``nn.Linear``'s but the output head's."""
    return {
        name: model.get_submodule(name).weight.detach().to("cpu", copy=True)
        for name in all_linear_names(model)
    }


@torch.no_grad()
def round_weights(
    model: nn.Module,
    weights: dict[str, torch.Tensor],
    round_trip: Callable[[torch.Tensor], torch.Tensor],
) -> None:
    """Set each of ``model``'s linear weights named in ``weights`` to that weight's round trip
    (``weights`` from :func:`linear_weights`, so every scheme starts from full precision)."""
    for name, weight in weights.items():
        target = model.get_submodule(name).weight
        target.copy_(round_trip(weight.to(target.device)))


def moved_share(unlearned: dict[str, torch.Tensor], original: dict[str, torch.Tensor]) -> float:
    """The share of the rounded weights that the unlearning changed at all."""
    moved = sum(int((w != original[name]).sum()) for name, w in unlearned.items())
    return moved / sum(w.numel() for w in unlearned.values())


def same_as_original(
    unlearned: dict[str, torch.Tensor],
    original: dict[str, torch.Tensor],
    round_trip: Callable[[torch.Tensor], torch.Tensor],
    device: torch.device | str = "cpu",
) -> float:
    """Of the weights the unlearning changed, the share whose rounded value equals Original's
    rounded value: the rounding undid the change. NaN when nothing changed. Rounded on
    ``device`` (the model's)."""
    moved = back = 0
    for name, cpu_weight in unlearned.items():
        weight, reference = cpu_weight.to(device), original[name].to(device)
        changed = weight != reference
        moved += int(changed.sum())
        back += int((changed & (round_trip(weight) == round_trip(reference))).sum())
    return back / moved if moved else float("nan")


def nll_shift(before: EvalResult, after: EvalResult) -> float:
    """Mean |Δ true-target NLL| over every forget item: how far the rounding moved scores."""
    shifts = [
        np.abs(after.tasks[name].nll_true - result.nll_true)
        for name, result in before.tasks.items()
    ]
    return float(np.mean(np.concatenate(shifts)))


def scheme_values(
    before: EvalResult, after: EvalResult, gold: Scored, original: Scored, gap: float
) -> dict[str, float]:
    """One scheme's metrics (the model's after rounding, vs rounded Gold), their Δ from
    before, and the knowledge between rounded Gold and rounded Original."""
    values = {key: after.metrics[key] for key in REPORTED if key in after.metrics}
    values.update(
        {
            f"delta_{key}": after.metrics[key] - before.metrics[key]
            for key in REPORTED
            if key in after.metrics and key in before.metrics
        }
    )
    values["nll_shift"] = nll_shift(before, after)
    values["gold_forget_metric"] = gold.metrics[METRIC]
    values["original_forget_metric"] = original.metrics[METRIC]
    values["knowledge"] = knowledge(
        after.metrics[METRIC],
        gold.metrics[METRIC],
        original.metrics[METRIC],
        MIN_GAP * max(gap, 0.0),
    )
    return values


def rounded(
    ctx: CheckContext, model_dir: str, scheme: str, data: PersonData, config: EvalConfig
) -> Scored:
    """``model_dir``'s model (Gold, Original) with its weights rounded by ``scheme``, scored
    on ``data``; cached apart from the adapter (:meth:`CheckContext.scored`)."""
    from clear_ray.models.loading import load_for_evaluation

    def score() -> EvalResult:
        model, processor = load_for_evaluation(model_dir, None, ctx.cfg.train.precision)
        round_weights(model, linear_weights(model), SCHEMES[scheme])
        return ctx.evaluate(model, processor, data, config, None)

    condition = {"scheme": scheme, "nf4_codes": NF4_CODES, "nf4_block": NF4_BLOCK}
    return ctx.scored("rounded", model_dir, condition, data, config, score)


@register_check(CHECK)
def check(ctx: CheckContext) -> CheckResult:
    from clear_ray.models.loading import load_for_evaluation

    data = ctx.data()
    config = ctx.eval_config(data, FORGET_TASKS[ctx.modality])
    gold_reference = ctx.reference(ctx.gold, data, config, None)
    original_reference = ctx.reference(ctx.original, data, config, gold_reference.reference)
    o, g = original_reference.metrics[METRIC], gold_reference.metrics[METRIC]
    model, processor = ctx.load_unlearned()
    before = ctx.evaluate(model, processor, data, config, gold_reference.reference)
    values = {key: before.metrics[key] for key in REPORTED if key in before.metrics}
    values["knowledge"] = knowledge(before.metrics[METRIC], g, o)
    items = {f"before/{task}": result.columns() for task, result in before.tasks.items()}
    original_model, _ = load_for_evaluation(ctx.original, None, ctx.cfg.train.precision)
    unlearned, original = linear_weights(model), linear_weights(original_model)
    del original_model
    values["moved_share"] = moved_share(unlearned, original)
    by_scheme: dict[str, float] = {}
    for name, round_trip in SCHEMES.items():
        gold = rounded(ctx, ctx.gold, name, data, config)
        rounded_original = rounded(ctx, ctx.original, name, data, config)
        round_weights(model, unlearned, round_trip)
        # Forget quality after rounding compares with Gold under the same rounding.
        after = ctx.evaluate(model, processor, data, config, gold.reference)
        scheme = scheme_values(before, after, gold, rounded_original, o - g)
        scheme["same_as_original"] = same_as_original(unlearned, original, round_trip, model.device)
        values.update({f"{name}/{key}": value for key, value in scheme.items()})
        by_scheme[name] = scheme["knowledge"]
        items.update({f"{name}/{task}": result.columns() for task, result in after.tasks.items()})
    values["worst_normalised"], worst = worst_knowledge(by_scheme)
    notes = (f"worst_normalised: {worst or 'no scheme left Original above Gold'}",)
    return CheckResult(prefixed(CHECK, values), items, notes)
