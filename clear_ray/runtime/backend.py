"""The torch process group for Ray Train workers, set up without importing torch elsewhere.

``TorchTrainer``'s ``TorchConfig`` imports torch at module level, and Ray unpickles it in the
Tune trial actor and in the Train controller: two processes per trial that never touch a
tensor pay ~1.3 s each for the import, on the critical path before the first worker starts.
This backend does the same setup (env vars, ``init_process_group``, the CUDA device of the
training thread, GPU visibility shared across the node's workers for NCCL), with every torch
import inside functions that run on the workers only.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from datetime import timedelta

import ray
import ray.train
from ray.exceptions import GetTimeoutError
from ray.train.backend import Backend, BackendConfig

from clear_ray.net import free_port

SHUTDOWN_TIMEOUT_S = 60
logger = logging.getLogger(__name__)


@dataclass
class TorchProcessGroupConfig(BackendConfig):
    """``backend``: "gloo" on CPU, "nccl" on GPUs."""

    backend: str = "gloo"
    timeout_s: int = 1800

    @property
    def backend_cls(self) -> type[Backend]:
        return TorchProcessGroupBackend

    @property
    def train_func_context(self) -> type:
        return CudaDeviceContext

    def to_dict(self) -> dict:
        return {"backend": self.backend, "timeout_s": self.timeout_s}


class TorchProcessGroupBackend(Backend):
    # Every worker sees all of its node's GPUs: NCCL needs its peers' devices for P2P.
    share_cuda_visible_devices = True

    def on_start(self, worker_group, backend_config: TorchProcessGroupConfig) -> None:
        address, port = worker_group.execute_single(0, free_address)
        ray.get(
            [
                worker_group.execute_single_async(
                    rank,
                    init_process_group,
                    backend=backend_config.backend,
                    master=(address, port),
                    timeout_s=backend_config.timeout_s,
                )
                for rank in range(len(worker_group))
            ]
        )

    def on_shutdown(self, worker_group, backend_config: TorchProcessGroupConfig) -> None:
        try:
            ray.get(worker_group.execute_async(destroy_process_group), timeout=SHUTDOWN_TIMEOUT_S)
        except GetTimeoutError:  # a dead peer can hang NCCL's teardown; the workers go anyway
            logger.warning("the torch process group did not shut down in %d s", SHUTDOWN_TIMEOUT_S)


class CudaDeviceContext:
    """Makes the worker's GPU current in the training thread (CUDA's device is per thread)."""

    def __enter__(self) -> None:
        import torch  # on the workers only (module docstring)

        if torch.cuda.is_available():
            from ray.train.torch import get_device  # imports torch: workers only

            torch.cuda.set_device(get_device())

    def __exit__(self, *exc) -> bool:
        return False


def free_address() -> tuple[str, int]:
    """This node's address and a free port on it (rank 0 hosts the rendezvous)."""
    address = ray.util.get_node_ip_address()
    return address, free_port("::" if ":" in address else "")


def init_process_group(backend: str, master: tuple[str, int], timeout_s: int) -> None:
    """Runs on each worker: torchrun's env vars (DeepSpeed reads them), then the group."""
    import torch.distributed as dist  # on the workers only (module docstring)

    context = ray.train.get_context()
    rank, world_size = context.get_world_rank(), context.get_world_size()
    os.environ.update(
        MASTER_ADDR=master[0],
        MASTER_PORT=str(master[1]),
        RANK=str(rank),
        WORLD_SIZE=str(world_size),
        LOCAL_RANK=str(context.get_local_rank()),
        LOCAL_WORLD_SIZE=str(context.get_local_world_size()),
        NODE_RANK=str(context.get_node_rank()),
    )
    if backend == "nccl":  # fail on a hung collective instead of waiting forever
        os.environ.setdefault("TORCH_NCCL_ASYNC_ERROR_HANDLING", "1")
    dist.init_process_group(
        backend=backend,
        init_method="env://",
        rank=rank,
        world_size=world_size,
        timeout=timedelta(seconds=timeout_s),
    )


def ensure_process_group() -> None:
    """A 1-rank gloo group for a DeepSpeed engine outside a Train job (a Ray task that trains,
    as the relearning attack; tests). Made once per process and kept: DeepSpeed holds its groups
    in module globals, so a group destroyed and made again would leave it a stale one."""
    import torch.distributed as dist  # on the workers only (module docstring)

    if dist.is_initialized():
        return
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(free_port()),
        RANK="0",
        WORLD_SIZE="1",
        LOCAL_RANK="0",
    )
    dist.init_process_group("gloo", rank=0, world_size=1)


def destroy_process_group() -> None:
    import torch  # on the workers only (module docstring)
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
