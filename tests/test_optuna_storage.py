"""The Optuna study lives in Optuna storage (SQLite in the search folder by default), not in
Tune's pickle of the searcher: constraints are stored, a new searcher continues the study, and
a searcher restored from Tune's checkpoint after a kill neither asks nor tells anything twice.

The searcher is driven directly, as Tune drives it (suggest / on_trial_complete / save /
pickling for tuner.pkl / restore), without Ray.
"""

from __future__ import annotations

import pickle
import warnings
from pathlib import Path

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState

from clear_ray.cli.tune import main
from clear_ray.errors import ConfigError
from clear_ray.runtime.ray_compat import optuna_study, optuna_trial
from clear_ray.search.constrained import ConstrainedOptunaSearch
from clear_ray.search.session import (
    SearchDirs,
    check_optuna_storage,
    dashboard_command,
)

SPACE = {"train.lr": FloatDistribution(1e-5, 1e-2, log=True)}
STUDY = "dpo-1/dpo"


def searcher(url: str) -> ConstrainedOptunaSearch:
    return ConstrainedOptunaSearch(
        space=SPACE, metric="best_objective", mode="max", storage_url=url, study_name=STUDY
    )


def result(objective: float, shortfall: float) -> dict[str, float]:
    return {"best_objective": objective, "best_constraint/min_retain": shortfall}


def stored(url: str) -> list[optuna.trial.FrozenTrial]:
    """The study as a separate reader (optuna-dashboard) sees it."""
    return optuna.load_study(study_name=STUDY, storage=url).trials


@pytest.fixture
def url(tmp_path: Path) -> str:
    return SearchDirs(tmp_path, "dpo-1").optuna_storage()


def test_default_storage_is_sqlite_in_the_search_folder(tmp_path: Path) -> None:
    dirs = SearchDirs(tmp_path, "dpo-1")
    assert dirs.optuna_storage() == f"sqlite:///{tmp_path.absolute()}/searches/dpo-1/optuna.db"
    assert dirs.optuna_storage("postgresql://u@head/optuna") == "postgresql://u@head/optuna"
    assert dirs.study_name("dpo") == STUDY


def test_values_and_constraints_are_in_the_stored_study(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    search = searcher(url)
    for trial_id, objective, shortfall in (("a", -3.0, 0.2), ("b", -9.0, -0.1)):
        search.suggest(trial_id)
        search.on_trial_complete(trial_id, result(objective, shortfall))
    trials = stored(url)
    assert [t.values for t in trials] == [[-3.0], [-9.0]]
    assert [t.constraints for t in trials] == [{"min_retain": 0.2}, {"min_retain": -0.1}]


def test_a_new_searcher_on_the_same_storage_continues_the_study(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    first = searcher(url)
    first.suggest("a")
    first.on_trial_complete("a", result(-3.0, 0.2))
    second = searcher(url)
    second.suggest("b")
    second.on_trial_complete("b", result(-2.0, -0.3))
    assert [t.number for t in stored(url)] == [0, 1]
    assert len(optuna_study(second).trials) == 2  # TPE learns from the first searcher's trial


def test_restore_after_a_kill_continues_the_stored_study_once(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    tuner_pkl = pickle.dumps(searcher(url))  # Tune pickles the searcher into tuner.pkl
    before = pickle.loads(tuner_pkl)
    before.suggest("a")
    before.suggest("b")
    before.on_trial_complete("a", result(-3.0, 0.2))
    checkpoint = tmp_path / "searcher-state.pkl"
    before.save(str(checkpoint))  # Tune's last checkpoint before the kill
    assert b"optuna.study.study" not in checkpoint.read_bytes()  # no copy of the study inside
    before.on_trial_complete("b", result(-1.0, -0.5))  # told after the checkpoint
    before.suggest("c")  # asked after the checkpoint: the restored Tune never runs it
    del before  # kill -9

    after = pickle.loads(tuner_pkl)  # Tuner.restore: tuner.pkl, then the searcher checkpoint
    after.restore(str(checkpoint))
    with warnings.catch_warnings():  # kept quietly: no "constraint ignored" warning
        warnings.simplefilter("error")
        after.on_trial_complete("b", result(-7.0, 0.9))  # Tune ran b again from its checkpoint
    after.suggest("d")
    after.on_trial_complete("d", result(-2.0, -0.1))

    trials = stored(url)
    assert [t.number for t in trials] == [0, 1, 2, 3]
    assert [t.state for t in trials] == [
        TrialState.COMPLETE,
        TrialState.COMPLETE,
        TrialState.FAIL,  # c, the orphan
        TrialState.COMPLETE,
    ]
    assert trials[1].values == [-1.0] and trials[1].constraints == {"min_retain": -0.5}
    assert trials[3].constraints == {"min_retain": -0.1}
    assert optuna_trial(after, "d").number == 3


def test_unusable_storage_is_refused_in_one_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"optuna storage .* is unusable: no folder"):
        check_optuna_storage(f"sqlite:///{tmp_path}/missing/optuna.db")
    with pytest.raises(ConfigError, match=r"postgresql://u:\*\*\*@127\.0\.0\.1:9/x is unusable"):
        check_optuna_storage("postgresql://u:secret@127.0.0.1:9/x")
    check_optuna_storage(f"sqlite:///{tmp_path}/optuna.db")
    assert not (tmp_path / "optuna.db").exists()  # checking writes nothing


def test_cli_refuses_a_bad_storage_before_writing(tmp_path: Path, capsys) -> None:
    output = tmp_path / "out"
    code = main(
        ["--optuna-storage", f"sqlite:///{tmp_path}/missing/o.db", "--output-dir", str(output)]
    )
    assert code == 2
    assert "optuna storage" in capsys.readouterr().err
    assert not output.exists()


def test_dashboard_command_opens_the_storage_without_its_password(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("shutil.which", lambda name: f"/usr/bin/{name}")  # installed
    assert dashboard_command("sqlite:////runs/searches/s/optuna.db") == (
        "optuna-dashboard sqlite:////runs/searches/s/optuna.db"
    )
    command = dashboard_command("postgresql://u:secret@head:5432/optuna")
    assert command == "optuna-dashboard 'postgresql://u:***@head:5432/optuna'"
