"""GPU memory of one trial worker, estimated from the model's shape before anything runs.

What an unlearning trial holds at its peak, the backward pass of a training step
(``train/loop.py``, ``train/step.py``): the model loaded in ``train.precision``; LoRA on the
language model's attention and MLP projections (``presets.LLAVA_LORA_TARGETS``) with its
gradients, fp32 master copy (bf16) and AdamW moments, partitioned by the ZeRO stage over the
trial's workers; DeepSpeed's gradient reduction bucket; and the activations autograd keeps for
every view the method scores with gradients (DPO: forget, IDK and retain batches at once).

Activations are counted per token and decoder layer as tensors autograd saves, the accounting
of Korthikanti et al., "Reducing Activation Recomputation in Large Transformer Models"
(arXiv 2205.05198, section 4.1), applied to Llama's layer as transformers writes it
(``models/llama/modeling_llama.py``): RMSNorm upcasts its input to fp32; q, k, v, the
attention output and the inputs of the projections are kept in the training dtype; the
SwiGLU MLP keeps its gate, SiLU and up outputs and the down projection's input; each LoRA
keeps its rank-wide intermediate; the fused attention kernel (SDPA) keeps no sequence ×
sequence matrix. The frozen vision tower and projector keep nothing (no gradient flows into
them) and the log-softmax over the vocabulary is kept in fp32 (``methods/base.py``
``sequence_scores``). Not counted: the CUDA context, the allocator's fragmentation, the
reference model's forward (no grad) and the evaluation after each epoch;
``bench/gpu_check.py`` records the measured peak beside this estimate.
"""

from __future__ import annotations

from dataclasses import dataclass

from clear_ray.models.shapes import ModelShape

GIB = 2**30
BYTES = {"fp32": 4, "bf16": 2}
FP32 = 4
# DeepSpeed's default reduce_bucket_size (deepspeed/runtime/zero/config.py): ZeRO stages 1-2
# allocate a gradient bucket of this many elements at each backward, however few parameters
# are trained (deepspeed/runtime/zero/stage_1_and_2.py setup_buckets).
ZERO_REDUCE_BUCKET = 500_000_000
# Tokens of text in a padded row besides the image: prompt template, question and answer
# (CLEAR's captions and TOFU answers are under ~100 tokens). An assumption, printed with it.
TEXT_TOKENS = 128


def vision_parameters(shape: ModelShape) -> int:
    """CLIP's vision transformer: patch and position embeddings, pre/post LayerNorm, layers
    of q/k/v/o and a 2-matrix MLP, all with biases (``models/clip/modeling_clip.py``)."""
    h, f = shape.vision_hidden, shape.vision_intermediate
    positions = (shape.image_size // shape.patch_size) ** 2 + 1  # + CLS
    embeddings = 3 * shape.patch_size**2 * h + h + positions * h
    layer = 4 * (h * h + h) + (h * f + f) + (f * h + h) + 2 * 2 * h
    return embeddings + 2 * 2 * h + shape.vision_layers * layer


def projector_parameters(shape: ModelShape) -> int:
    """LLaVA's 2-layer MLP from the vision width to the text width, with biases."""
    v, h = shape.vision_hidden, shape.text_hidden
    return (v * h + h) + (h * h + h)


def text_parameters(shape: ModelShape) -> int:
    """Llama: embeddings, layers of q/k/v/o, gate/up/down and two RMSNorms, the final norm
    and the output head (shared with the embeddings when tied)."""
    h, f, vocab = shape.text_hidden, shape.text_intermediate, shape.vocab
    layer = 4 * h * h + 3 * h * f + 2 * h
    head = 0 if shape.tied_embeddings else vocab * h
    return vocab * h + shape.text_layers * layer + h + head


def model_parameters(shape: ModelShape) -> int:
    return vision_parameters(shape) + projector_parameters(shape) + text_parameters(shape)


def lora_parameters(shape: ModelShape, rank: int) -> int:
    """LoRA A (r × in) and B (out × r) on q, k, v, o (h → h), gate and up (h → f) and down
    (f → h) of every decoder layer: r·(11h + 3f) per layer."""
    h, f = shape.text_hidden, shape.text_intermediate
    return shape.text_layers * rank * (4 * 2 * h + 2 * (h + f) + (f + h))


def activation_bytes_per_token(shape: ModelShape, precision: str, lora_rank: int) -> int:
    """What autograd keeps per token of a scored view: decoder layers, final norm, and the
    fp32 log-probabilities over the vocabulary (see the module docstring)."""
    a, h, f = BYTES[precision], shape.text_hidden, shape.text_intermediate
    norm = FP32 * h  # RMSNorm's fp32 copy of its input (its frozen weight keeps no output)
    attention = norm + a * (h + 3 * h + h)  # q/k/v input; q, k after RoPE, v; attention output
    mlp = norm + a * (h + 4 * f)  # gate/up input; gate, SiLU, up outputs; down input
    lora = a * 7 * lora_rank  # the r-wide output of each of the 7 LoRA A matrices
    return shape.text_layers * (attention + mlp + lora) + norm + FP32 * shape.vocab


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes per trial worker at the peak of a training step, by what holds them."""

    weights: int
    lora_gradients: int
    optimizer: int
    reduce_bucket: int
    activations: int

    @property
    def total(self) -> int:
        return (
            self.weights + self.lora_gradients + self.optimizer + self.reduce_bucket
        ) + self.activations


def estimate_trial_memory(
    shape: ModelShape,
    precision: str,
    lora_rank: int,
    zero_stage: int,
    workers: int,
    batch_size: int,
    views: int,
    tokens: int,
) -> MemoryEstimate:
    """One trial worker's GPU memory (bytes) at the backward of a training step.

    Args:
        shape: the model's sizes (the preset's).
        precision: ``train.precision``; DeepSpeed casts every parameter to it.
        lora_rank: ``lora.r``.
        zero_stage: ``train.zero_stage``: 1 partitions optimizer states, 2 also gradients,
            3 also the weights, each over ``workers``.
        workers: ``search.workers_per_trial``.
        batch_size: ``train.batch_size``, the micro-batch per worker and view.
        views: batches the method scores with gradients in one step (``Method.views``).
        tokens: padded sequence length of a batch.
    """
    b = BYTES[precision]
    lora = lora_parameters(shape, lora_rank)
    weights = (model_parameters(shape) + lora) * b
    gradients = lora * b
    # AdamW's two fp32 moments, plus DeepSpeed's fp32 master copy of bf16 parameters.
    optimizer = lora * (2 * FP32 + (FP32 if precision == "bf16" else 0))
    if zero_stage >= 1:
        optimizer //= workers
    if zero_stage >= 2:
        gradients //= workers
    if zero_stage >= 3:
        weights //= workers
    bucket = ZERO_REDUCE_BUCKET * b if zero_stage >= 1 else 0
    per_token = activation_bytes_per_token(shape, precision, lora_rank)
    activations = views * batch_size * tokens * per_token
    return MemoryEstimate(weights, gradients, optimizer, bucket, activations)


def estimate_lines(
    estimate: MemoryEstimate, heading: str, views_label: str, tokens_label: str
) -> list[str]:
    """The estimate as comment lines of the dry run, in GiB."""
    rows = (
        ("weights (model + LoRA)", estimate.weights),
        ("LoRA gradients", estimate.lora_gradients),
        ("AdamW moments + fp32 master", estimate.optimizer),
        ("ZeRO gradient bucket", estimate.reduce_bucket),
        (f"activations: {views_label}, {tokens_label}", estimate.activations),
        ("total", estimate.total),
    )
    width = max(len(name) for name, _ in rows)
    table = [f"#   {name:<{width}}  {value / GIB:7.2f} GiB" for name, value in rows]
    return [f"# {heading}", *table]
