"""Run provenance tags: git state of the checkout, library versions and the run's setup."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

from clear_ray import provenance
from clear_ray.provenance import LIBRARIES, system_tags

ROOT = Path(__file__).resolve().parents[1]


def git(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)


in_checkout = pytest.mark.skipif(
    shutil.which("git") is None or git("rev-parse", "HEAD").returncode != 0,
    reason="needs git and a git checkout of the repository",
)


@in_checkout
def test_commit_is_the_checkout_head() -> None:
    head = git("rev-parse", "HEAD").stdout.strip()
    assert system_tags(1, 0, 0, "unpinned")["git.commit"] in (head, f"{head}-dirty")


@in_checkout
def test_dirty_suffix_follows_uncommitted_changes() -> None:
    dirty = bool(git("status", "--porcelain").stdout.strip())
    assert system_tags(1, 0, 0, "unpinned")["git.commit"].endswith("-dirty") == dirty


@in_checkout
def test_branch_is_tagged_unless_detached() -> None:
    branch = git("rev-parse", "--abbrev-ref", "HEAD").stdout.strip()
    assert system_tags(1, 0, 0, "unpinned").get("git.branch", "HEAD") == branch


@in_checkout
def test_working_directory_does_not_matter(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # not a git checkout
    head = git("rev-parse", "HEAD").stdout.strip()
    assert system_tags(1, 0, 0, "unpinned")["git.commit"].removesuffix("-dirty") == head


def test_commit_is_unknown_outside_a_checkout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(provenance, "PACKAGE_DIR", tmp_path)
    tags = system_tags(1, 0, 0, "unpinned")
    assert tags["git.commit"] == "unknown"
    assert "git.branch" not in tags


def test_commit_is_unknown_without_git(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "")
    assert system_tags(1, 0, 0, "unpinned")["git.commit"] == "unknown"


def test_versions_are_the_installed_ones() -> None:
    tags = system_tags(1, 0, 0, "unpinned")
    for name in LIBRARIES:
        assert tags[f"version.{name}"] == version(name)


def test_a_missing_library_is_tagged_missing() -> None:
    assert provenance.library_version("no-such-distribution-clear-ray") == "missing"


def test_run_setup_is_tagged_as_strings() -> None:
    tags = system_tags(world_size=4, zero_stage=2, seed=1234, kernels="unpinned")
    assert tags["seed"] == "1234"
    assert tags["world_size"] == "4"
    assert tags["deepspeed.zero_stage"] == "2"
    assert tags["device"] == "cpu" or tags["device"].startswith("cuda:")
    assert tags["python"] and tags["platform"]
    assert all(isinstance(value, str) for value in tags.values())


def test_cpu_and_its_kernels_are_tagged() -> None:
    """CPU numbers differ across instruction sets, so a run says which its kernels used."""
    tags = system_tags(1, 0, 0, "unpinned")
    cpuinfo = Path("/proc/cpuinfo")
    lines = cpuinfo.read_text().splitlines() if cpuinfo.is_file() else []
    models = [line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")]
    if models:  # x86 Linux; aarch64's cpuinfo names no model
        assert tags["cpu"].startswith(models[0])
    forced = subprocess.run(
        [sys.executable, "-c", "from clear_ray.provenance import cpu_capability as c; print(c())"],
        capture_output=True,
        text=True,
        env={**os.environ, "ATEN_CPU_CAPABILITY": "default"},
    )
    assert forced.stdout.strip() == "DEFAULT", forced.stderr[-1000:]
    assert tags["cpu.capability"] == provenance.cpu_capability()
    assert tags["cpu"] in provenance.machine_summary()


def test_the_cpu_model_names_its_numbers_where_a_hypervisor_masks_the_name() -> None:
    first = "processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 25\nmodel\t\t: 17\n"
    first += "model name\t: AMD EPYC\nstepping\t: 1\n"
    second = "processor\t: 1\ncpu family\t: 23\nmodel\t\t: 49\nmodel name\t: AMD EPYC\n"
    assert provenance.cpu_model(f"{first}\n{second}") == (
        "AMD EPYC (cpu family 25, model 17, stepping 1)"
    )
    assert provenance.cpu_model("model name\t: Apple M2\n") == "Apple M2"
    assert provenance.cpu_model("processor\t: 0\nvendor_id\t: ARM\n") is None
