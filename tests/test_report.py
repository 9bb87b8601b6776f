"""`python -m clear_ray.report`: a search folder (from the real writers) to report.md/.html."""

from __future__ import annotations

import base64
import csv
import json
import math
import shutil
import subprocess
import sys
from dataclasses import asdict
from html.parser import HTMLParser
from pathlib import Path

import pytest

from clear_ray.config import Config
from clear_ray.report.__main__ import main
from clear_ray.report.inputs import read_search
from clear_ray.report.tables import L1, feasible_seeds, l1_cells, mean_sd, seed_cells
from clear_ray.report.write import write_report
from clear_ray.search.diagnostics import expected_best
from clear_ray.search.plots import TrialPoint, search_plots
from clear_ray.search.results import (
    Leaderboard,
    LeaderboardRow,
    TrialRow,
    write_csv,
    write_leaderboard,
)
from clear_ray.search.session import MethodRun, SearchDirs, SearchState

PNG = b"\x89PNG\r\n\x1a\n"
ORIGINAL = {
    "clear/real_metric": 0.6,
    "clear/retain_metric": 0.8,
    "clear/forget_metric": 0.8,
    "clear/log_forget_quality": -20.0,
    "clear/ks_d": 0.9,
    "forget_captions/n_items": 30.0,
    "clear/forget_quality_js": 0.3,
    "log_forget_quality": -20.0,
}
GOLD = {**ORIGINAL, "clear/forget_metric": 0.3, "log_forget_quality": 0.0}
FINAL = {**ORIGINAL, "clear/forget_metric": 0.5, "clear/log_forget_quality": -4.0}
# (number, objective, retain, feasible, l1)
TRIALS = {
    "ga": [(0, -3.0, 0.75, True, 0.0), (1, -2.0, 0.74, True, 1e-3), (2, 5.0, 0.1, False, 0.0)],
    "dpo": [(0, -6.0, 0.78, True, 1e-4), (1, -1.0, 0.2, False, 1e-2)],
}


def trial_rows(method: str, adapters: Path) -> list[TrialRow]:
    return [
        TrialRow(
            trial=f"{method}{number:04d}",
            number=number,
            status="done",
            feasible=feasible,
            best_objective=objective,
            best_forget_metric=0.5,
            best_retain_metric=retain,
            best_model_utility=0.5,
            best_epoch=1,
            stopped_at=1,
            params={"train.lr": 1e-3 * (number + 1), "regularizer.l1": l1},
            adapter=str(adapters / f"{method}{number:04d}"),
        )
        for number, objective, retain, feasible, l1 in TRIALS[method]
    ]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished two-method search, each file written by the function the pipeline uses."""
    output = tmp_path_factory.mktemp("report")
    cfg = Config().replace({"output_dir": str(output), "search.multi_objective": True})
    dirs = SearchDirs(output, "all-1")
    state = SearchState("all-1", cfg.to_flat(), list(TRIALS), {m: f"{m}.yaml" for m in TRIALS})
    rows = [LeaderboardRow("Original", ORIGINAL, ""), LeaderboardRow("Gold", GOLD, "")]
    for method in TRIALS:
        trials = trial_rows(method, dirs.adapters(method))
        dirs.method(method).mkdir(parents=True)
        write_csv(trials, ["train.lr", "regularizer.l1"], dirs.method(method) / "trials.csv")
        points = [
            TrialPoint(t.number, t.best_objective, t.best_retain_metric, 0.5, t.feasible, t.params)
            for t in trials
        ]
        references = {"Original": (0.8, -20.0), "Gold": (0.8, 0.0)}
        search_plots(points, dirs.method(method) / "plots", "log_forget_quality", 0.72, True,
                     references)  # fmt: skip
        outcome = LeaderboardRow(method, FINAL, "yes", f"{method}0000")
        state.runs[method] = MethodRun(f"run-{method}", "done", asdict(outcome))
        rows.append(outcome)
    write_leaderboard(dirs.root, Leaderboard(rows), "compact")
    dirs.save(state)
    return dirs.root


@pytest.fixture
def search(built: Path, tmp_path: Path) -> Path:
    """A copy each test may add files to."""
    return Path(shutil.copytree(built, tmp_path / "searches" / built.name))


class Page(HTMLParser):
    """Tables (rows of cell texts, header row first) and image sources of an HTML page."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.tables: list[list[list[str]]] = []
        self.images: list[str] = []
        self.cell: list[str] | None = None
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self.cell = []
        elif tag == "img":
            self.images.append(dict(attrs)["src"])

    def handle_data(self, data: str) -> None:
        if self.cell is not None:
            self.cell.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th"):
            self.tables[-1][-1].append("".join(self.cell or []))
            self.cell = None


def report_page(search: Path) -> Page:
    write_report(read_search(search))
    return Page((search / "report.html").read_text())


def table_with(page: Page, first_header: str, second_header: str) -> dict[str, list[str]]:
    (table,) = [t for t in page.tables if t[0][:2] == [first_header, second_header]]
    return {row[0]: row for row in table[1:]}


def confirm_run(seed: int, real: float, feasible: bool = True) -> dict:
    metrics = {**FINAL, "clear/real_metric": real}
    return {"seed": seed, "run_id": f"r{seed}", "adapter": "", "metrics": metrics,
            "feasible": feasible}  # fmt: skip


def test_html_has_table1_with_references_and_both_configurations(search: Path) -> None:
    rows = table_with(report_page(search), "model", "Real")
    assert list(rows) == [
        "Original", "Gold", "ga (default)", "ga (tuned)", "dpo (default)", "dpo (tuned)"
    ]  # fmt: skip
    assert rows["Original"][1:8] == ["0.6", "0.8", "0.8", "-20", "0.9", "30", "0.3"]
    assert rows["ga (tuned)"][1:9] == ["0.6", "0.8", "0.5", "-4", "0.9", "30", "0.3", "yes"]
    assert "final evaluation of trial ga0000" in rows["ga (tuned)"][9]
    assert rows["ga (default)"][-1] == "not evaluated"


def test_every_image_is_an_embedded_png(search: Path) -> None:
    page = report_page(search)
    assert len(page.images) == 2 * 4  # retain, history, Pareto (multi-objective), importances
    for source in page.images:
        assert source.startswith("data:image/png;base64,")
        assert base64.b64decode(source.split(",", 1)[1]).startswith(PNG)


def test_confirm_seeds_give_mean_and_sample_sd(search: Path) -> None:
    tuned = [confirm_run(1, 0.5), confirm_run(2, 0.7), confirm_run(3, 0.9, feasible=False)]
    confirm = {
        "method": "ga", "fold": "report", "seeds": [1, 2, 3],
        "configurations": {
            "tuned": {"params": {"train.lr": 0.002}, "runs": tuned, "feasible_fraction": 2 / 3},
            "default": {"params": {"train.lr": 1e-5}, "runs": [confirm_run(1, 0.1)],
                        "feasible_fraction": 0.0},
        },
    }  # fmt: skip
    (search / "ga" / "confirm.json").write_text(json.dumps(confirm))
    page = report_page(search)
    rows = table_with(page, "model", "Real")
    assert rows["ga (tuned)"][1] == "0.7 ± 0.2"  # mean of 0.5, 0.7, 0.9; sd with n − 1
    assert rows["ga (tuned)"][3] == "0.5 ± 0"
    assert rows["ga (tuned)"][5:7] == ["0.9 ± 0", "30"]  # D's spread; n is the fold's
    assert rows["ga (tuned)"][8:] == ["2/3", "3 seeds, report fold"]
    assert rows["ga (default)"][1] == "0.1"
    (configurations,) = [t for t in page.tables if t[0][:2] == ["method", "configuration"]]
    assert ["ga", "default", "train.lr=1e-05"] in configurations
    assert ["ga", "tuned", "train.lr=0.002"] in configurations
    assert ["dpo", "tuned", "train.lr=0.001, regularizer.l1=0.0001"] in configurations
    missing = (search / "report.md").read_text().split("## Missing")[1].split("##")[0]
    assert "no confirm seeds for dpo:" in missing and "ga" not in missing.split(":")[0]


def test_without_confirm_seeds_the_report_says_its_numbers_are_single_runs(search: Path) -> None:
    write_report(read_search(search))
    text = (search / "report.md").read_text()
    assert "no confirm seeds for ga, dpo: single-run numbers, selection = report" in text
    assert "No folds.json: selection and report used the same forget persons." in text
    assert "| ga | default | train.lr=0.001, regularizer.l1=0 |" in text  # config defaults
    assert "| ga | tuned | train.lr=0.001, regularizer.l1=0 |" in text  # trial ga0000's row


def test_folds_and_threshold_are_stated(search: Path) -> None:
    folds = {"selection": ["Ann", "Bob"], "report": ["Cid", "Dee"], "seed": 3,
             "report_fraction": 0.5, "forget_split": "forget05"}  # fmt: skip
    (search / "folds.json").write_text(json.dumps(folds))
    write_report(read_search(search))
    text = (search / "report.md").read_text()
    assert "Selected on 2 forget persons (Ann, Bob); reported on 2 others (Cid, Dee)" in text
    assert "fold seed 3" in text
    # relative threshold: 0.9 x Original's clear/retain_metric 0.8
    assert "Feasible iff clear/retain_metric >= 0.72 (clear/retain_metric >= 0.9 × Original's)" in (
        text
    )


def test_l1_question_compares_the_arms_at_equal_size_with_counts(search: Path) -> None:
    rows = table_with(report_page(search), "method", "L1 = 0")
    # ga: the infeasible L1 = 0 trial (objective 5) does not count; one trial an arm cannot
    # tell the arms apart.
    assert rows["ga"][1:] == [
        "-3 (best of 1; 1 of 2 trials feasible)",
        "-2 (best of 1; 1 of 1 trials feasible)",
        "cannot tell (p 1, 1 vs 1 trials)",
    ]
    assert rows["dpo"][1] == "no trial with L1 = 0 in this search"
    assert rows["dpo"][3] == "cannot tell (an arm has no feasible trial)"


def trials_with(l1_objectives: list[tuple[float, float]]) -> list[dict[str, str]]:
    return [
        {"trial": f"t{i}", "feasible": "yes", "best_objective": str(value), L1: str(l1)}
        for i, (l1, value) in enumerate(l1_objectives)
    ]


def test_one_zero_trial_against_seven_is_matched_and_gives_no_verdict() -> None:
    # The grid's shape: 1 trial with L1 = 0 and 7 with L1 > 0. The L1 > 0 arm's best of 1 is
    # the mean of its values, (-8 - 7 - ... - 2) / 7 = -5, not its maximum -2, which beats
    # the lone -4 only because it is the best of seven draws.
    positive = [(1e-4 * (i + 1), -8.0 + i) for i in range(7)]
    zero, more, verdict = l1_cells(trials_with([(0.0, -4.0), *positive]))
    assert zero == "-4 (best of 1; 1 of 1 trials feasible)"
    assert more == "-5 (best of 1; 7 of 7 trials feasible)"
    assert verdict.startswith("cannot tell (p ")  # the smallest possible p is 2/8


def test_separated_arms_of_four_name_the_higher_one() -> None:
    # Every L1 > 0 trial above every L1 = 0 one: exact two-sided p = 2 / C(8, 4) = 0.029.
    arms = [(0.0, -8.0), (0.0, -7.0), (0.0, -6.0), (0.0, -5.0)]
    arms += [(1e-3, -4.0), (1e-3, -3.0), (1e-2, -2.0), (1e-2, -1.0)]
    assert l1_cells(trials_with(arms))[2] == "L1 > 0 (p 0.029)"
    flipped = [(l1, value) for (l1, _), (_, value) in zip(arms, reversed(arms), strict=True)]
    assert l1_cells(trials_with(flipped))[2] == "L1 = 0 (p 0.029)"


def test_expected_best_is_the_mean_maximum_over_equal_sized_subsets() -> None:
    # The 6 pairs of [1, 2, 3, 4] have maxima 2, 3, 4, 3, 4, 4: mean 20 / 6.
    assert expected_best([4.0, 1.0, 3.0, 2.0], 2) == pytest.approx(20 / 6)
    assert expected_best([4.0, 1.0, 3.0, 2.0], 4) == 4.0
    assert expected_best([4.0, 1.0, 3.0, 2.0], 1) == pytest.approx(2.5)
    assert math.isnan(expected_best([1.0], 2))


def test_l1_cells_say_when_l1_was_not_searched_or_no_zero_was_feasible() -> None:
    assert l1_cells([{"feasible": "yes", "best_objective": "1", "trial": "a"}])[0] == (
        "L1 not searched"
    )
    trials = [{"feasible": "no", "best_objective": "1", "trial": "a", "regularizer.l1": "0"}]
    assert l1_cells(trials)[0] == "none of 1 trials with L1 = 0 feasible"
    assert l1_cells(None)[0] == "no trials.csv"


def test_mean_sd_of_one_value_is_the_value() -> None:
    assert mean_sd([0.25]) == "0.25"
    assert mean_sd([1.0, 3.0]) == "2 ± 1.4"
    assert mean_sd([]) == "—"


def test_a_configuration_without_runs_uses_its_mean_sd_and_feasible_fraction() -> None:
    configuration = {
        "mean": {"clear/real_metric": 0.5},
        "sd": {"clear/real_metric": 0.1},
        "feasible_fraction": 0.5,
    }
    assert seed_cells(configuration)[:2] == ["0.5 ± 0.1", "—"]
    assert feasible_seeds(configuration) == "50%"
    assert feasible_seeds({}) == "—"


def test_robustness_table_shows_each_checks_normalised_worst_case_and_links_the_detail(
    search: Path,
) -> None:
    assert not write_report(read_search(search))[2:]  # no robustness.json: no CSV either
    assert "no robustness.json: no robustness table" in (search / "report.md").read_text()
    robust = {
        "best": {
            "robust/relearn/net_recovery": 0.125,
            "robust/relearn/worst_normalised": 0.5,
            "robust/quantize/worst_normalised": 0.25,
            "robust/quantize/int8/forget_metric": 0.4,
            "robust/prompts/prompt_3/forget_metric": 0.3,
        },
        "tuned/seed1": {"robust/quantize/worst_normalised": 0.75},
    }
    (search / "ga" / "robustness.json").write_text(json.dumps(robust))
    paths = write_report(read_search(search))
    page = Page((search / "report.html").read_text())
    (table,) = [t for t in page.tables if t[0][:2] == ["method", "model"]]
    # One column per check some model has (prompts has no normalised value: no column).
    assert table == [
        ["method", "model", "relearn", "quantize", "net relearn recovery"],
        ["ga", "best", "0.5", "0.25", "0.125"],
        ["ga", "tuned/seed1", "—", "0.75", "—"],
    ]
    assert paths[2] == search / "robustness.csv"
    with paths[2].open() as handle:
        detail = list(csv.reader(handle))
    assert detail[0] == ["method", "model", "check", "metric", "value"]
    assert ["ga", "best", "prompts", "prompt_3/forget_metric", "0.3"] in detail
    assert ["ga", "tuned/seed1", "quantize", "worst_normalised", "0.75"] in detail
    assert len(detail) == 1 + 5 + 1
    assert '<a href="robustness.csv">' in (search / "report.html").read_text()
    assert "](robustness.csv)" in (search / "report.md").read_text()


def test_robustness_without_normalised_values_says_so_and_still_writes_the_detail(
    search: Path,
) -> None:
    robust = {"best": {"robust/relearn/recovery": 0.25}}
    (search / "dpo" / "robustness.json").write_text(json.dumps(robust))
    paths = write_report(read_search(search))
    text = (search / "report.md").read_text()
    section = text.split("## Robustness")[1].split("##")[0]
    assert "No checked model has a normalised worst case" in section and "|" not in section
    assert (search / "robustness.csv").read_text().splitlines()[1] == (
        "dpo,best,relearn,recovery,0.25"
    )
    assert [path.name for path in paths] == ["report.md", "report.html", "robustness.csv"]


def test_markdown_links_the_plots_relative_to_where_it_is_written(
    search: Path, tmp_path: Path
) -> None:
    out = tmp_path / "elsewhere"
    assert main([str(search), "--out", str(out), "--no-mlflow"]) == 0
    text = (out / "report.md").read_text()
    assert "](../searches/all-1/ga/plots/forget_vs_retain.png)" in text
    assert "| dpo (tuned) |" in text
    assert not (search / "report.md").exists()


def test_a_failed_render_leaves_no_file(search: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from clear_ray.report import write

    def broken(report):
        raise RuntimeError("render failed")

    monkeypatch.setattr(write, "to_html", broken)
    with pytest.raises(RuntimeError):
        write_report(read_search(search))
    assert not list(search.glob("*report*")) and not list(search.glob(".*tmp"))


def test_help_explains_and_bad_input_answers_at_once_from_the_command_line(tmp_path) -> None:
    command = [sys.executable, "-m", "clear_ray.report"]
    shown = subprocess.run([*command, "--help"], capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0 and "Table 1" in shown.stdout and "--tracking-uri" in shown.stdout
    bad = subprocess.run([*command, str(tmp_path / "nope")], capture_output=True, text=True,
                         timeout=60)  # fmt: skip
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1


@pytest.mark.parametrize(
    "argument",
    ["/no/such/folder", "0123456789abcdef0123456789abcdef", "."],
    ids=["path", "run-id-without-store", "not-a-search"],
)
def test_bad_input_exits_2_with_one_line(
    argument: str, capsys: pytest.CaptureFixture, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.chdir(tmp_path)  # the default tracking store would be ./clear_ray_runs
    assert main([argument]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
    assert not (tmp_path / "report.md").exists()


@pytest.mark.slow  # MLflow's SQLite store: ~10 s to create
def test_logs_to_the_search_run_and_resolves_a_run_id(search: Path, capsys) -> None:
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{search.parent / 'mlflow.db'}"
    client = MlflowClient(uri)
    run = client.create_run(client.create_experiment("report", search.parent.as_uri()))
    run_id = run.info.run_id
    client.set_tag(run_id, "clear_ray.search", search.name)
    client.log_param(run_id, "output_dir", str(search.parent.parent))
    state = json.loads((search / "state.json").read_text())
    state["top_parent_id"] = run_id
    (search / "state.json").write_text(json.dumps(state))

    assert main([str(search), "--tracking-uri", uri]) == 0
    assert {a.path for a in client.list_artifacts(run_id)} == {"report.md", "report.html"}
    (search / "report.html").unlink()
    assert main([run_id, "--tracking-uri", uri]) == 0
    assert (search / "report.html").is_file()
    assert f"Logged to MLflow run {run_id}" in capsys.readouterr().out


def objective_runs(values: dict[int, float], infeasible: tuple[int, ...] = ()) -> list[dict]:
    return [
        {"seed": seed, "run_id": "", "adapter": "", "metrics": {"log_forget_quality": value},
         "feasible": seed not in infeasible}
        for seed, value in values.items()
    ]  # fmt: skip


def test_tuned_against_default_paired_by_seed_with_an_honest_verdict(search: Path) -> None:
    # ga: tuned −4, −3, −2.5 with seed 3 infeasible, so −20 (Original's); default −6, −5.5, −5.
    # Differences +2, +2.5, −15: mean −3.5, sd 9.962, t(0.975, 2) · sd/√3 = 24.75. Sign flips
    # of ±2 ±2.5 ±15: 5 of 8 sums reach −10.5.
    ga = {
        "tuned": {"runs": objective_runs({1: -4.0, 2: -3.0, 3: -2.5}, infeasible=(3,))},
        "default": {"runs": objective_runs({1: -6.0, 2: -5.5, 3: -5.0})},
    }
    # dpo: differences 3, 2.7, 2.7: mean 2.8, sd 0.1732: 2.8 ± 0.4303.
    dpo = {
        "tuned": {"runs": objective_runs({1: -1.0, 2: -1.5, 3: -1.2})},
        "default": {"runs": objective_runs({1: -4.0, 2: -4.2, 3: -3.9})},
    }
    for method, configurations in (("ga", ga), ("dpo", dpo)):
        record = {"method": method, "seeds": [1, 2, 3], "configurations": configurations}
        (search / method / "confirm.json").write_text(json.dumps(record))
    page = report_page(search)
    rows = table_with(page, "method", "tuned − default per seed")
    assert rows["ga"][1:] == [
        "+2, +2.5, -15",
        "-3.5",
        "[-28.25, +21.25]",
        "0.625",
        "inconclusive at 3 seeds (95% t-interval [-28.25, +21.25] contains 0)",
    ]
    assert rows["dpo"][-1] == (
        "tuned beat default at 3 seeds (95% t-interval [+2.37, +3.23] above 0)"
    )
    text = (search / "report.md").read_text()
    assert "an infeasible run counted as Original's value" in text
    assert "the draw-to-draw variance, which can be as large as the seed-to-seed one" in text
    assert "one sd" not in text


def test_references_are_read_from_the_full_csv_at_full_precision(search: Path) -> None:
    """leaderboard.md rounds to 4 digits and its compact view lacks D; the CSV has both."""
    rows = [LeaderboardRow("Original", {**ORIGINAL, "clear/ks_d": 0.123456789}, "")]
    write_leaderboard(search, Leaderboard(rows), "compact")
    assert "0.123456789" not in (search / "leaderboard.md").read_text()
    assert read_search(search).references["Original"]["clear/ks_d"] == 0.123456789
    assert "Gold" not in read_search(search).references
