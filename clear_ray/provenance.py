"""MLflow tags that say which code, libraries and hardware produced a run.

Search results are only comparable between runs with the same code and library versions, so
every parent run records them. Nothing here may fail a search: an unknown value is tagged as
such instead of raising.
"""

from __future__ import annotations

import os
import platform
import subprocess
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import torch

PACKAGE_DIR = Path(__file__).resolve().parent
LIBRARIES = (
    "torch",
    "transformers",
    "peft",
    "deepspeed",
    "ray",
    "optuna",
    "mlflow",
    "scipy",
    "numpy",
    "clear_ray",
)
GIT_TIMEOUT_S = 5.0


def _git(*args: str) -> str | None:
    """Output of a git command run in the package directory, None when it fails.

    ``--no-optional-locks`` keeps ``git status`` from rewriting the index of a checkout that
    someone may be working in.
    """
    try:
        result = subprocess.run(
            ["git", "--no-optional-locks", *args],
            cwd=PACKAGE_DIR,
            capture_output=True,
            text=True,
            timeout=GIT_TIMEOUT_S,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() if result.returncode == 0 else None


def git_tags() -> dict[str, str]:
    """HEAD of the checkout the package runs from (``-dirty`` with uncommitted or untracked
    files); "unknown" for an installed copy, which lies in no checkout or an untracked one."""
    if _git("ls-files", "--error-unmatch", "--", "__init__.py") is None:
        return {"git.commit": "unknown"}
    commit = _git("rev-parse", "HEAD")
    if commit is None:
        return {"git.commit": "unknown"}
    status = _git("status", "--porcelain")
    tags = {"git.commit": commit + ("-dirty" if status else "")}
    branch = _git("rev-parse", "--abbrev-ref", "HEAD")
    if branch and branch != "HEAD":  # "HEAD" means detached: no branch
        tags["git.branch"] = branch
    return tags


def library_version(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "missing"


def device_name() -> str:
    return f"cuda:{torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else "cpu"


def cpu_model(cpuinfo: str) -> str | None:
    """The first CPU's model name in /proc/cpuinfo's text, with its family, model and stepping
    numbers: a hypervisor may mask the name (a cloud virtual machine's "AMD EPYC" is any of several
    generations), and the numbers still tell the microarchitecture. None without a name."""
    fields: dict[str, str] = {}
    for line in cpuinfo.splitlines():
        if not line.strip():
            break  # the first processor's block only
        key, _, value = line.partition(":")
        fields[key.strip()] = value.strip()
    if "model name" not in fields:
        return None
    keys = ("cpu family", "model", "stepping")
    numbers = [f"{key} {fields[key]}" for key in keys if key in fields]
    return f"{fields['model name']} ({', '.join(numbers)})" if numbers else fields["model name"]


def cpu_name() -> str:
    """The CPU's model name and numbers (``cpu_model``) on Linux, ``platform.processor()``
    elsewhere."""
    try:
        name = cpu_model(Path("/proc/cpuinfo").read_text())
    except OSError:
        name = None
    return name or platform.processor() or "unknown"


def cpu_capability() -> str:
    """The instruction set torch's CPU kernels dispatch to (DEFAULT, AVX2, AVX512...).

    CPU results are reproducible bit for bit on one machine, not across these: the tiny
    preset's pretraining and finetunes amplify rounding differences, so the same code and
    libraries gave Original a report-fold log forget quality of -7.0 with AVX512 kernels and
    -20.9 with ``ATEN_CPU_CAPABILITY=avx2`` on one machine (docs/reproducibility.md).
    """
    return torch.backends.cpu.get_cpu_capability()


def machine_summary() -> str:
    """One line for a benchmark's results: architecture, cores, CPU, kernels, OS."""
    return (
        f"{platform.machine()}, {os.cpu_count()} cores, {cpu_name()}, "
        f"torch CPU kernels {cpu_capability()}, MKL_CBWR={os.environ.get('MKL_CBWR', 'unset')}, "
        f"{platform.platform()}"
    )


def system_tags(world_size: int, zero_stage: int, seed: int, kernels: str) -> dict[str, str]:
    """Tags for a run: git state, library versions, Python, platform, device and run setup."""
    return {
        **git_tags(),
        **{f"version.{name}": library_version(name) for name in LIBRARIES},
        "python": platform.python_version(),
        "platform": platform.platform(),
        "seed": str(seed),
        "world_size": str(world_size),
        "deepspeed.zero_stage": str(zero_stage),
        "device": device_name(),
        "cpu": cpu_name(),
        "cpu.capability": cpu_capability(),
        "cpu.kernels": kernels,  # kernels.kernels_tag: the pin settings, or "unpinned"
    }
