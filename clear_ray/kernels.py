"""Pinned CPU kernels, so that a CPU search's numbers depend on the CPU as little as they can.

Why: torch's vectorised kernels, oneDNN and MKL each dispatch on the instruction set, and each
instruction set rounds differently. The tiny preset's pretraining and finetunes amplify that
into another Original and Gold: with the same code and libraries, Original's report-fold log
forget quality was -7.0 with AVX512 kernels and -20.9 with AVX2 ones on one machine, and two
of four study verdicts changed between two CPU types (bench/RESULTS.md). Each setting pins one
dispatcher (a variable the user already set wins, and the provenance tags say what ran):

- ``ATEN_CPU_CAPABILITY=avx2``: ATen's vectorised kernels (``aten/src/ATen/native/
  DispatchStub.cpp`` reads it, capped at what the CPU has);
- ``ONEDNN_MAX_CPU_ISA=AVX2``: oneDNN's JIT kernels;
- ``MKL_CBWR=COMPATIBLE`` with ``MKL_DYNAMIC=FALSE``: MKL's conditional numerical
  reproducibility mode, the BLAS under every linear layer and the vector maths under
  ``torch.exp``. COMPATIBLE is the one branch that gives the same results on Intel and other
  x86 CPUs; MKL's AVX2 branch holds on Intel CPUs only, and elsewhere "the AUTO branch is used
  instead" (oneMKL developer guide, "Getting Started with Conditional Numerical
  Reproducibility"): with it, an AMD EPYC and an emulated Intel Haswell gave other bits for
  ``F.linear`` and ``torch.exp``, with COMPATIBLE the same (bench/cross_cpu.py, bench/RESULTS.md).
  ``MKL_ENABLE_INSTRUCTIONS`` only caps the ISA, it is not a reproducibility mode;
- ``OMP_NUM_THREADS``/``MKL_NUM_THREADS`` = the worker's CPUs: reductions are split per thread.

``torch.use_deterministic_algorithms`` does nothing for differences across instruction sets.
What is not shown pinned: MKL's vector-maths square root under ``torch.sqrt`` (AdamW's
denominator) runs one kernel whatever ``MKL_CBWR`` says, and emulation cannot say whether it
gives the same bits on Intel and AMD CPUs; docs/reproducibility.md says how far the pins are
checked.
GPU runs are not pinned: their numbers come from the GPU's kernels.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from clear_ray.config import SearchConfig


def pinned_settings(search: SearchConfig) -> dict[str, str]:
    """The environment that pins a CPU search's kernels; empty when unpinned or on GPUs."""
    if not search.pin_cpu_kernels or search.gpus_per_trial > 0:
        return {}
    threads = str(max(1, int(search.cpus_per_worker)))
    return {
        "ATEN_CPU_CAPABILITY": "avx2",
        "ONEDNN_MAX_CPU_ISA": "AVX2",
        "MKL_CBWR": "COMPATIBLE",
        "MKL_DYNAMIC": "FALSE",
        "OMP_NUM_THREADS": threads,
        "MKL_NUM_THREADS": threads,
    }


def kernel_env(search: SearchConfig) -> dict[str, str]:
    """:func:`pinned_settings` with what the user's environment already sets winning."""
    return {name: os.environ.get(name, value) for name, value in pinned_settings(search).items()}


def missing_pins(search: SearchConfig, job_env: Mapping[str, str]) -> dict[str, str]:
    """The pins of :func:`kernel_env` that a Ray job's environment (its runtime_env's
    ``env_vars``) lacks or sets otherwise: what that job's workers would run without."""
    return {name: value for name, value in kernel_env(search).items() if job_env.get(name) != value}


def pin_this_process(search: SearchConfig) -> None:
    """Pins the driver's own kernels as its Ray workers' are. Each library reads its variable
    when it first dispatches, so this must run before the process computes with torch."""
    os.environ.update(kernel_env(search))


def kernels_key(search: SearchConfig) -> str:
    """What the reference caches are keyed by: the kernels a build runs with. A pinned build,
    an unpinned one (the CPU's own instruction sets) and a GPU one give other weights from the
    same recipe, so none may be read back as another."""
    return "gpu" if search.gpus_per_trial > 0 else kernels_tag(search)


def kernels_tag(search: SearchConfig) -> str:
    """What the ``cpu.kernels`` provenance tag says: the pin settings in force, or unpinned."""
    env = kernel_env(search)
    if not env:
        return "unpinned"
    return "pinned: " + ", ".join(f"{name}={value}" for name, value in sorted(env.items()))
