"""Which node types of a Ray cluster config hold a trial worker's GPU memory.

The node types and their GPU counts are ``cluster.yaml``'s ``available_node_types``; the memory
of one GPU is looked up by the EC2 instance family in ``GPU_GIB``, from AWS's accelerated
computing instance specifications (https://docs.aws.amazon.com/ec2/latest/instancetypes/ac.html,
"GPU memory" divided by the GPU count).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import yaml

from clear_ray.memory import GIB

# EC2 instance family -> (GPU, GiB of memory per GPU).
GPU_GIB: dict[str, tuple[str, int]] = {
    "g4dn": ("T4", 16),
    "g5": ("A10G", 24),
    "g6": ("L4", 24),
    "g6e": ("L40S", 48),
    "p3": ("V100", 16),
    "p3dn": ("V100", 32),
    "p4d": ("A100", 40),
    "p4de": ("A100", 80),
    "p5": ("H100", 80),
    "p5e": ("H200", 141),
    "p5en": ("H200", 141),
}
# Of a GPU's memory, what the estimate may fill: the CUDA context, NCCL's buffers and the
# allocator's fragmentation take the rest (none of them is in clear_ray/memory.py's estimate).
USABLE_FRACTION = 0.9
CLUSTER_YAML = Path(__file__).resolve().parents[1] / "cluster.yaml"  # the checkout's


@dataclass(frozen=True)
class NodeType:
    name: str
    instance_type: str
    gpus: int


def node_types(cluster_yaml: Path) -> list[NodeType]:
    """``available_node_types`` of a Ray cluster config, in its order."""
    config = yaml.safe_load(cluster_yaml.read_text())
    return [
        NodeType(
            name,
            str(spec.get("node_config", {}).get("InstanceType", "?")),
            int(spec.get("resources", {}).get("GPU", 0)),
        )
        for name, spec in config.get("available_node_types", {}).items()
    ]


def gpu_of(instance_type: str) -> tuple[str, int] | None:
    """(GPU, GiB per GPU) of an EC2 instance type, or None for a family not in the table."""
    return GPU_GIB.get(instance_type.split(".", 1)[0])


def workers_per_gpu(gpus_per_trial: float, workers_per_trial: int) -> int:
    """Trial workers one GPU holds at once: Ray packs fractional GPU requests (0.5 per worker
    puts two workers, of one trial or two, on a GPU); a whole GPU or more per worker is one."""
    per_worker = gpus_per_trial / workers_per_trial
    return 1 if per_worker >= 1 else max(1, math.floor(1 / per_worker + 1e-9))


def fit_lines(nodes: list[NodeType], per_gpu: int) -> list[str]:
    """One comment line per node type: whether one of its GPUs holds ``per_gpu`` bytes."""
    lines = []
    width = max((len(node.name) for node in nodes), default=0)
    for node in nodes:
        gpu = gpu_of(node.instance_type)
        where = f"#   {node.name:<{width}}  {node.instance_type:<14}"
        if node.gpus == 0:
            lines.append(f"{where}  no GPU")
        elif gpu is None:
            lines.append(f"{where}  {node.gpus} GPU(s) of unknown memory (not in nodes.GPU_GIB)")
        else:
            model, gib = gpu
            usable = gib * USABLE_FRACTION
            verdict = "holds it" if per_gpu / GIB <= usable else "too small"
            lines.append(
                f"{where}  {node.gpus} x {model} {gib} GiB  {verdict} "
                f"({per_gpu / GIB:.1f} of {usable:.1f} GiB usable per GPU)"
            )
    return lines
