"""optuna-dashboard (the `ui` extra, in `dev`) opens a search's stored study as the search prints
the command: the studies, trials, values and feasibility through the dashboard's HTTP API."""

from __future__ import annotations

import json
import shlex
import urllib.request
from collections.abc import Iterator

import optuna
import pytest
from local_servers import serving
from optuna.distributions import FloatDistribution

from clear_ray.net import free_port
from clear_ray.search.constrained import ConstrainedOptunaSearch
from clear_ray.search.session import SearchDirs, dashboard_command

SEARCH = "dpo-20261201-101010"
TRIALS = (("a", -3.0, 0.2), ("b", -9.0, -0.1), ("c", -2.0, -0.3))  # id, objective, shortfall


@pytest.fixture(scope="module")
def storage(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A finished search's study, written by the search's own searcher (as Tune drives it)."""
    dirs = SearchDirs(tmp_path_factory.mktemp("dashboard"), SEARCH)
    dirs.root.mkdir(parents=True)
    url = dirs.optuna_storage()
    searcher = ConstrainedOptunaSearch(
        space={"train.lr": FloatDistribution(1e-5, 1e-2, log=True)},
        metric="best_objective",
        mode="max",
        storage_url=url,
        study_name=dirs.study_name("dpo"),
    )
    for trial_id, objective, shortfall in TRIALS:
        searcher.suggest(trial_id)
        result = {"best_objective": objective, "best_constraint/min_retain": shortfall}
        searcher.on_trial_complete(trial_id, result)
    return url


@pytest.fixture(scope="module")
def dashboard(storage: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The printed command, run as printed, on a free port of 127.0.0.1."""
    port = free_port()
    command = [*shlex.split(dashboard_command(storage)), "--host", "127.0.0.1", "--port", str(port)]
    url = f"http://127.0.0.1:{port}"
    log = tmp_path_factory.mktemp("dashboard_log") / "dashboard.log"
    with serving(command, f"{url}/api/meta", log, timeout_s=120):
        yield url


def get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=30) as reply:
        return json.load(reply)


def test_the_dashboard_lists_the_searchs_study(dashboard: str) -> None:
    studies = get(f"{dashboard}/api/studies")["study_summaries"]
    assert [(s["study_name"], s["directions"]) for s in studies] == [
        (f"{SEARCH}/dpo", ["maximize"])
    ]


def test_the_dashboard_shows_each_trials_value_parameter_and_feasibility(
    dashboard: str, storage: str
) -> None:
    (study,) = get(f"{dashboard}/api/studies")["study_summaries"]
    trials = get(f"{dashboard}/api/studies/{study['study_id']}")["trials"]
    stored = optuna.load_study(study_name=f"{SEARCH}/dpo", storage=storage).trials
    assert [trial["state"] for trial in trials] == ["Complete"] * 3
    assert [trial["values"] for trial in trials] == [[value] for _, value, _ in TRIALS]
    assert [float(trial["params"][0]["param_external_value"]) for trial in trials] == [
        trial.params["train.lr"] for trial in stored
    ]
    feasible = [
        {attr["key"]: attr["value"] for attr in trial["user_attrs"]}["feasible"] for trial in trials
    ]
    assert feasible == ["False", "True", "True"]  # shortfall ≤ 0 is feasible


def test_the_printed_command_says_how_to_install_the_dashboard_where_it_is_not(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("shutil.which", lambda name: None)
    assert dashboard_command("sqlite:////runs/optuna.db") == (
        "optuna-dashboard sqlite:////runs/optuna.db  "
        '(not installed here: pip install -e ".[ui]" in the clear_ray checkout)'
    )
