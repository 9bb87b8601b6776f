"""bench/analyse_study.py on hand-made raw files whose verdicts are known by hand, and the raw
file's schema (clear_ray/report/study_runs.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from bench_scripts import BENCH, load_bench

from clear_ray.paired import FAIL, HARM, PASS, Rules
from clear_ray.report.study_runs import (
    Draw,
    RawFileError,
    StudyRun,
    TaskScore,
    append_run,
    read_runs,
)

analyse_study = load_bench("analyse_study")

ORIGINAL = -15.0
DEFAULT = -12.0


def run(
    draw: int, method: str, arm: str, seed: int, objective: float, feasible: bool = True
) -> StudyRun:
    return StudyRun(
        draw=Draw(draw, 100 + draw, 200 + draw, 300 + draw, 400 + draw),
        commit="a754100",
        cpu="AMD EPYC 9B14",
        cpu_capability="AVX2",
        pins={"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "AVX2"},
        method=method,
        arm=arm,
        seed=seed,
        params={"train.lr": 0.001},
        epoch=3,
        feasible=feasible,
        clear_real=0.4,
        clear_retain=0.6,
        clear_forget=0.2,
        tasks={"forget_captions": TaskScore(objective, 0.3, 60)},
        forget_distance=1.0 - objective / 20,
        alpha=1.0,
        objective_name="log_forget_quality",
        objective=objective,
        matched_objective=objective,
        original_objective=ORIGINAL,
        gold_b_objective=-0.7,
    )


def method_runs(
    method: str, gains: list[tuple[float, float]], infeasible: set[tuple[int, int]] = frozenset()
) -> list[StudyRun]:
    """Per draw, the two seeds' gains of tuned over the default (which sits at DEFAULT);
    ``infeasible`` (draw, seed) tuned runs count as Original's value."""
    runs = []
    for draw, seed_gains in enumerate(gains):
        for seed, gain in enumerate(seed_gains, start=1):
            runs.append(run(draw, method, "default", seed, DEFAULT))
            tuned = (draw, seed) not in infeasible
            runs.append(run(draw, method, "tuned", seed, DEFAULT + gain, feasible=tuned))
    return runs


# Eight draws, every draw mean positive: sign-flip p = 1/256.
CLEAR_GAIN = [(2.0, 2.4), (3.0, 2.6), (1.5, 1.9), (2.5, 2.1), (4.0, 3.6), (1.0, 1.4), (3, 3),
              (2, 2)]  # fmt: skip
# Draw means ±1, ±2, ±0.5, ±1.5: mean 0.
NO_EFFECT = [(1.2, 0.8), (-0.8, -1.2), (2.2, 1.8), (-1.8, -2.2), (0.7, 0.3), (-0.3, -0.7),
             (1.7, 1.3), (-1.3, -1.7)]  # fmt: skip
HARMFUL = [(-g1, -g2) for g1, g2 in CLEAR_GAIN]
# On the KS lattice: draw differences 0.6 x4, 1.2 x3 and a tie, both seeds alike. Mean 0.75;
# sign-flip: only the 2 patterns with every non-zero positive reach the sum 6.0: p = 2/256;
# Wilcoxon zsplit: mid-ranks 3.5 (0.6) and 7 (1.2), W+ = 35.5 its maximum: p = 2/256.
LATTICE = [(0.6, 0.6)] * 4 + [(1.2, 1.2)] * 3 + [(0.0, 0.0)]


def write(path: Path, runs: list[StudyRun]) -> Path:
    path.write_text("".join(r.to_line() + "\n" for r in runs))
    return path


def test_verdicts_of_a_gain_a_lattice_gain_no_effect_and_a_harm(tmp_path: Path) -> None:
    runs = [
        *method_runs("gd", CLEAR_GAIN),
        *method_runs("npo", LATTICE),
        *method_runs("dpo", NO_EFFECT),
        *method_runs("idk", HARMFUL),
    ]
    analysis = analyse_study.analyse(runs, Rules(), resamples=2000)
    gd, npo = analysis.primary["gd"][1], analysis.primary["npo"][1]
    assert gd.p_sign_flip == 1 / 256
    assert npo.p_sign_flip == pytest.approx(2 / 256)
    assert npo.p_wilcoxon == pytest.approx(2 / 256)
    assert npo.mean == pytest.approx(0.75)
    # Holm: 1/256 x 4 = 0.0156, 2/256 x 3 = 0.0234; dpo and idk far above.
    assert analysis.holm["gd"] == pytest.approx(4 / 256)
    assert analysis.holm["npo"] == pytest.approx(6 / 256)
    assert {m: v.outcome for m, v in analysis.verdicts.items()} == {
        "gd": PASS,
        "npo": PASS,
        "dpo": FAIL,
        "idk": HARM,
    }
    assert analysis.primary["dpo"][1].mean == pytest.approx(0.0)
    # Tied pairs count ½: npo's 2 tied of 16 pairs.
    assert npo.improvement == pytest.approx(15 / 16)
    assert analysis.platform.outcome == FAIL
    assert analysis.platform.reasons == ("harm: idk",)


def test_platform_fails_when_only_gd_passes(tmp_path: Path) -> None:
    runs = method_runs("gd", CLEAR_GAIN)
    for method in ("npo", "dpo", "idk"):
        runs += method_runs(method, NO_EFFECT)
    analysis = analyse_study.analyse(runs, Rules(), resamples=1000)
    assert analysis.verdicts["gd"].outcome == PASS
    assert analysis.platform.outcome == FAIL
    assert "only gd passed, whose default collapses" in analysis.platform.reasons
    runs += [replace(r, method="simnpo") for r in method_runs("x", CLEAR_GAIN)]
    assert analyse_study.analyse(runs, Rules(), resamples=1000).platform.outcome == PASS


def test_a_gain_bought_with_infeasible_runs_fails_the_feasibility_rule() -> None:
    # Tuned gains 5 nats where feasible; 4 of its 16 runs are infeasible and count as Original
    # (−15 against the default's −12: −3). Draw means 1 (one seed infeasible) or 5: all
    # positive, p = 1/256, mean 3, the CI above 0; only the feasible rate (75 % against 100 %,
    # a drop of 0.25 > 0.10) fails.
    infeasible = {(0, 1), (1, 1), (2, 1), (3, 1)}
    runs = method_runs("npo", [(5.0, 5.0)] * 8, infeasible)
    analysis = analyse_study.analyse(runs, Rules(), resamples=1000)
    npo = analysis.primary["npo"][1]
    assert npo.differences == (1.0,) * 4 + (5.0,) * 4
    assert npo.p_sign_flip == 1 / 256 and npo.ci[0] > 0
    assert npo.feasible_tuned == 0.75 and npo.feasible_default == 1.0
    assert analysis.verdicts["npo"].outcome == FAIL
    assert analysis.verdicts["npo"].reasons == ("tuned feasible 75% vs default 100%",)


def test_secondary_comparisons_appear_when_their_rows_exist(tmp_path: Path) -> None:
    runs = method_runs("npo", CLEAR_GAIN)
    titles = [title for title, _, _ in analyse_study.analyse(runs, Rules(), 500).secondary]
    assert titles == [
        "Retain-matched: tuned against default at α*",
        "W1 to Gold: tuned against default",
    ]
    sweep = [replace(r, arm="sweep", objective=DEFAULT + 1.0) for r in runs if r.arm == "default"]
    analysis = analyse_study.analyse(runs + sweep, Rules(), 500)
    titles = [title for title, _, _ in analysis.secondary]
    assert titles[:2] == [
        "Tuned against the practitioner's lr sweep",
        "The sweep against the default",
    ]
    against_sweep = analysis.secondary[0][2]["npo"][1]
    assert against_sweep.mean == pytest.approx(analysis.primary["npo"][1].mean - 1.0)


def test_cli_writes_the_study_and_the_forest_plot(tmp_path: Path, capsys) -> None:
    raw = write(
        tmp_path / "runs.jsonl",
        [*method_runs("gd", CLEAR_GAIN), *method_runs("npo", LATTICE)],
    )
    out, plot = tmp_path / "doc" / "STUDY.md", tmp_path / "doc" / "forest.png"
    code = analyse_study.main([str(raw), "--out", str(out), "--plot", str(plot)])
    assert code == 0
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = out.read_text()
    assert "**Platform: PASS.**" in text
    assert "![tuned − default per draw](forest.png)" in text
    verdicts = text.split("## Verdicts")[1].split("**Platform")[0].splitlines()
    assert next(row for row in verdicts if row.startswith("| npo |")).endswith(
        # Two methods: Holm doubles gd's 1/256 and keeps npo's 2/256.
        "| +0.75 | [+0.45, +1.05] | 0.00781 | 0.00781 | 0.00781 | 0.94 | 100% / 100% | PASS |"
    )
    assert "| draw 7 (data 107, reference 207, fold 307, sampler 407) | -15 | -0.7 |" in text
    assert "platform PASS; PASS: gd, npo; HARM: none" in capsys.readouterr().out


def test_blinded_prints_only_location_free_numbers(tmp_path: Path, capsys) -> None:
    runs = [*method_runs("npo", NO_EFFECT), *method_runs("dpo", CLEAR_GAIN)]
    raw = write(tmp_path / "runs.jsonl", runs)
    assert analyse_study.main([str(raw), "--blinded", "--out", str(tmp_path / "S.md")]) == 0
    first = capsys.readouterr().out
    assert "D = " in first and "sigma_run" in first
    assert not (tmp_path / "S.md").exists()
    # Every tuned value 5 nats higher, or the arms swapped: the same output.
    shifted = [replace(r, objective=r.objective + 5) if r.arm == "tuned" else r for r in runs]
    swapped = [replace(r, arm={"tuned": "default", "default": "tuned"}[r.arm]) for r in runs]
    for other in (shifted, swapped):
        analyse_study.main([str(write(tmp_path / "runs.jsonl", other)), "--blinded"])
        assert capsys.readouterr().out == first


def line_of(**changes) -> str:
    record = json.loads(run(0, "npo", "tuned", 1, -3.0).to_line())
    record.update(changes)
    return json.dumps(record)


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        ([line_of(), "{not json"], "runs.jsonl:2: Expecting property name"),
        ([line_of(seed=True)], "runs.jsonl:1: seed is not int"),
        ([line_of(arm="best")], "runs.jsonl:1: arm 'best' is not one of default, sweep, tuned"),
        ([line_of(objective=None)], "runs.jsonl:1: objective is not a number"),
        ([line_of(objective=float("nan"))], "runs.jsonl:1: objective is not a finite number"),
        ([line_of(extra=1)], "runs.jsonl:1: unknown field(s) extra"),
        ([line_of(), line_of()], "runs.jsonl:2: draw 0 npo tuned seed 1 is already on line 1"),
        (
            [line_of(), line_of(seed=2, original_objective=-9.0)],
            "runs.jsonl:2: draw 0: Original's objective -9.0 differs from earlier lines' -15.0",
        ),
        (
            [line_of(), line_of(seed=2, cpu="Intel Xeon Platinum 8481C")],
            "runs.jsonl:2: draw 0 ran with cpu Intel Xeon Platinum 8481C, earlier lines with "
            "AMD EPYC 9B14: a draw runs whole on one commit and CPU type",
        ),
        (
            [line_of(), line_of(seed=2, pins={"MKL_CBWR": "COMPATIBLE"})],
            "runs.jsonl:2: draw 0 ran with pins {'MKL_CBWR': 'COMPATIBLE'}, earlier lines with",
        ),
        ([line_of(), line_of(seed=2, commit="f30a824")], "draw 0 ran with commit f30a824"),
        ([""], "runs.jsonl: no runs"),
    ],
)
def test_bad_lines_exit_2_with_one_line_and_write_nothing(
    tmp_path: Path, capsys, lines: list[str], message: str
) -> None:
    raw = tmp_path / "runs.jsonl"
    raw.write_text("\n".join(lines) + "\n")
    out, plot = tmp_path / "STUDY.md", tmp_path / "forest.png"
    assert analyse_study.main([str(raw), "--out", str(out), "--plot", str(plot)]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and message in error
    assert sorted(p.name for p in tmp_path.iterdir()) == ["runs.jsonl"]


def test_help_and_a_missing_file_from_the_command_line(tmp_path: Path) -> None:
    script = str(BENCH / "analyse_study.py")
    shown = subprocess.run([sys.executable, script, "--help"], capture_output=True, text=True)
    assert shown.returncode == 0
    assert "--blinded" in shown.stdout and "clear_ray/report/study_runs.py" in shown.stdout
    missing = subprocess.run(
        [sys.executable, script, str(tmp_path / "none.jsonl"), "--out", str(tmp_path / "S.md")],
        capture_output=True,
        text=True,
    )
    assert missing.returncode == 2
    assert missing.stderr == f"error: {tmp_path / 'none.jsonl'}: no such file\n"
    assert list(tmp_path.iterdir()) == []


def test_a_run_round_trips_through_the_raw_file(tmp_path: Path) -> None:
    path = tmp_path / "results" / "runs.jsonl"
    first = run(0, "npo", "tuned", 1, -3.0, feasible=False)
    second = replace(run(0, "npo", "default", 1, -12.0), forget_distance=None, alpha=None, tasks={})
    append_run(path, first)
    append_run(path, second)
    assert read_runs(path) == [first, second]
    assert first.primary == ORIGINAL and second.primary == -12.0
    with pytest.raises(ValueError):  # nan is not a measurement: None is
        replace(first, forget_distance=float("nan")).to_line()
    with pytest.raises(RawFileError):
        read_runs(tmp_path / "absent.jsonl")
