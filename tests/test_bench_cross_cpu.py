"""bench/cross_cpu.py: bits are compared stage by stage against this machine's CPU, per arm,
and the first stage that differs is named (a later stage differs whenever an earlier does)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from bench_scripts import load_bench

cross_cpu = load_bench("cross_cpu")


def line(cpu: str, arm: str, capability: str, ops: tuple[str, ...] = (), **digests: str) -> dict:
    stages = {stage: "same" for stage in cross_cpu.STAGES}
    kernels = {name: "other" if name in ops else "same" for name in ("linear", "exp", "sqrt")}
    return {
        "cpu": cpu,
        "arm": arm,
        "capability": capability,
        "digests": {**stages, **digests},
        "ops": kernels,
    }


def test_the_summary_names_the_first_stage_whose_bits_differ() -> None:
    lines = [
        line("native", "pinned", "AVX2"),
        line("native", "unpinned", "AVX512", ("exp",), losses="512", parameters="512"),
        line("Haswell", "pinned", "AVX2"),
        line("Haswell", "unpinned", "AVX2"),
        line("EPYC-Rome", "pinned", "AVX2", ("sqrt",), nll="other", metrics="other"),
        line("EPYC-Rome", "unpinned", "AVX2"),
    ]
    assert cross_cpu.summary(lines) == [
        "pinned (AVX2 here): Haswell (AVX2): the same bits; "
        "EPYC-Rome (AVX2): other bits from the nll on, other kernels: sqrt; "
        "EPYC-Rome against Haswell: other bits from the nll on, other kernels: sqrt",
        "unpinned (AVX512 here): Haswell (AVX2): other bits from the losses on, "
        "other kernels: exp; EPYC-Rome (AVX2): other bits from the losses on, other kernels: exp; "
        "EPYC-Rome against Haswell: the same bits",
    ]


def test_an_arm_without_a_native_run_is_left_out() -> None:
    lines = [line("native", "pinned", "AVX2"), line("Haswell", "unpinned", "AVX2")]
    assert cross_cpu.summary(lines) == ["pinned (AVX2 here): no other CPU type ran"]


def test_the_digest_reads_the_bits_of_tensors_and_arrays_alike() -> None:
    values = np.array([1.0, 2.0, 3.0], dtype=np.float32)
    assert cross_cpu.digest(values) == cross_cpu.digest(torch.tensor([1.0, 2.0, 3.0]))
    # One ulp apart: another digest.
    assert cross_cpu.digest(values) != cross_cpu.digest(np.nextafter(values, 4, dtype=np.float32))
    assert cross_cpu.digest(values[:1], values[1:]) == cross_cpu.digest(values)


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--steps", "0"], "error: --steps must be at least 1\n"),
        (["--arms", "pinned,avx9"], "error: --arms takes pinned, unpinned, pinned-mkl-avx2, "
         "not 'pinned,avx9'\n"),
    ],
)  # fmt: skip
def test_bad_input_is_one_line_and_exit_2(
    flags: list[str], message: str, capsys: pytest.CaptureFixture, tmp_path
) -> None:
    out = tmp_path / "raw.jsonl"
    with pytest.raises(SystemExit) as stopped:
        cross_cpu.main(["--cpus", "", "--out", str(out), *flags])
    assert stopped.value.code == 2
    assert capsys.readouterr().err == message
    assert not out.exists()


def test_the_former_pin_differs_from_todays_in_mkls_branch_only() -> None:
    pinned, former = cross_cpu.ARMS["pinned"](), cross_cpu.ARMS["pinned-mkl-avx2"]()
    assert pinned["MKL_CBWR"] == "COMPATIBLE" and former["MKL_CBWR"] == "AVX2"
    assert {**former, "MKL_CBWR": "COMPATIBLE"} == pinned
