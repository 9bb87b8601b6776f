"""Find a model's text decoder layers by structure, not by class name.

RMU steers one decoder layer's output; the same code must find that layer in LLaVA
(``model.language_model.layers``), Qwen2-VL (``model.language_model.layers``, its vision
tower holds ``blocks``) and plain causal LMs (``model.layers``).
"""

from __future__ import annotations

from torch import nn

VISION_PARTS = {"vision_tower", "visual", "vision_model", "vision_encoder"}


def decoder_layers(model: nn.Module) -> nn.ModuleList:
    """The longest ``layers`` ModuleList outside any vision tower."""
    candidates = [
        module
        for name, module in model.named_modules()
        if isinstance(module, nn.ModuleList)
        and name.rsplit(".", 1)[-1] == "layers"
        and not VISION_PARTS & set(name.split("."))
    ]
    if not candidates:
        raise ValueError(f"no text decoder layers found in {type(model).__name__}")
    return max(candidates, key=len)


def layer_index(num_layers: int, fraction: float) -> int:
    """Depth fraction -> layer index, so one search range fits models of any depth.

    Indices are 0-based, as WMDP's ``layer_id`` (``model.layers[7]``): the paper steers layer
    7 of Zephyr-7B's 32, which the default fraction 0.225 gives (round(0.225 · 31) = 7; any
    fraction in [0.21, 0.24) does).
    """
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"layer fraction must be in [0, 1], got {fraction}")
    return round(fraction * (num_layers - 1))


def steering_layer(model: nn.Module, fraction: float) -> nn.Module:
    layers = decoder_layers(model)
    return layers[layer_index(len(layers), fraction)]
