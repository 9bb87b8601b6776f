"""Every use of Ray's and Optuna's private API, in one place, with the versions it was written for.

Ray (``ray._private``, ``ray.train.v2._internal``, ``internal_kv``) and Ray Tune's
``OptunaSearch`` (its ``_``-prefixed attributes) give no stability promise for these names; a
release may rename or remove any of them. Keeping them here makes an upgrade one file to read,
and importing this module warns once when the installed Ray or Optuna is not the release these
uses were tested with, the one pyproject.toml allows (tests/test_backend.py, tests/test_failures.py,
tests/test_optuna_storage.py and tests/test_search_cleanup.py exercise each of them).

Kept light at import time: Train controllers (through ``runtime/failures.py``) and driver-side
Ray tasks (through ``runtime/driver_tasks.py``) import it, so Optuna is not imported here.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

import ray
import ray._private.state
from ray.core.generated import gcs_pb2
from ray.experimental import internal_kv
from ray.train.v2._internal.callbacks.datasets import DatasetsCallback
from ray.train.v2._internal.callbacks.placement_group_callback import (
    PlacementGroupCleanerCallback,
)
from ray.train.v2._internal.exceptions import RayTrainError
from ray.train.v2._internal.execution.controller import TrainController
from ray.train.v2._internal.execution.failure_handling import (
    DefaultFailurePolicy,
    FailureDecision,
)

if TYPE_CHECKING:
    import optuna
    from ray.tune.search.optuna import OptunaSearch

# The releases whose private names below were read and tested (major.minor); pyproject.toml
# allows these only.
WRITTEN_FOR = {"ray": "2.60", "optuna": "5.1"}

__all__ = [
    "RAY_TOKEN_LOGGER",
    "TRAIN_CONTROLLER_CLASS",
    "WRITTEN_FOR",
    "DatasetsCallback",
    "DefaultFailurePolicy",
    "FailureDecision",
    "PlacementGroupCleanerCallback",
    "PlacementGroupInfo",
    "RayTrainError",
    "actor_info",
    "check_versions",
    "has_autoscaler",
    "installed_versions",
    "kv_del",
    "kv_exists",
    "kv_put",
    "mark_completed",
    "optuna_metrics",
    "optuna_study",
    "optuna_trial",
    "optuna_trial_numbers",
    "placement_groups",
    "reopen_searcher",
    "searcher_state",
    "stored_trial",
    "version_mismatches",
]


def version_mismatches(installed: dict[str, str | None]) -> list[str]:
    """``name installed (tested with X)`` for each package whose major.minor differs."""
    found = []
    for name, expected in WRITTEN_FOR.items():
        have = installed.get(name)
        if have is None or ".".join(have.split(".")[:2]) != expected:
            found.append(f"{name} {have or 'not installed'} (tested with {expected})")
    return found


def installed_versions() -> dict[str, str | None]:
    """From package metadata: no import of Optuna."""
    versions: dict[str, str | None] = {}
    for name in WRITTEN_FOR:
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = None
    return versions


def check_versions() -> None:
    mismatches = version_mismatches(installed_versions())
    if mismatches:
        warnings.warn(
            "clear_ray uses private Ray/Optuna API tested only with the releases pyproject.toml "
            f"allows: {', '.join(mismatches)}; see clear_ray/runtime/ray_compat.py",
            RuntimeWarning,
            stacklevel=2,
        )


check_versions()

# ---- GCS: key-value store, actors and placement groups ---------------------------------------

# Ray's note that a new local cluster uses token authentication (search/quiet.py silences it).
RAY_TOKEN_LOGGER = "ray._private.authentication.authentication_token_setup"


def kv_put(key: str | bytes, value: str | bytes, namespace: str) -> None:
    internal_kv._internal_kv_put(key, value, overwrite=True, namespace=namespace)


def kv_exists(key: str | bytes, namespace: str) -> bool:
    return internal_kv._internal_kv_exists(key, namespace=namespace)


def kv_del(key: str | bytes, namespace: str) -> None:
    internal_kv._internal_kv_del(key, namespace=namespace)


def actor_info(actor_id: str) -> dict[str, Any]:
    """GCS's record of an actor (empty if unknown), read from GCS directly: the dashboard's
    State API is what fails under load."""
    return ray._private.state.actors(actor_id=actor_id)


# The class name GCS gives a Train run's controller actor (its ``ActorClassName``).
TRAIN_CONTROLLER_CLASS = TrainController.__name__


@dataclass(frozen=True)
class PlacementGroupInfo:
    """A placement group as GCS keeps it, with what Ray's public ``placement_group_table``
    leaves out: who created it, whether that creator is dead, and the job."""

    group_id: str
    state: str  # PENDING | PREPARED | CREATED | RESCHEDULING | REMOVED
    creator: str | None  # the creating actor's id; None when a driver or task created it
    creator_dead: bool  # GCS marks it when the creating actor dies
    detached: bool
    job: str  # the creator's job id (hex)
    bundles: tuple[dict[str, float], ...]

    @property
    def live(self) -> bool:
        return self.state != "REMOVED"


def placement_groups() -> list[PlacementGroupInfo]:
    """Every placement group GCS knows (removed ones it still lists included), from its table
    directly (``GlobalStateAccessor``, as ``ray.util.placement_group_table`` reads it)."""
    states = gcs_pb2.PlacementGroupTableData.PlacementGroupState
    accessor = ray._private.state.state._connect_and_get_accessor()
    groups = []
    for raw in accessor.get_placement_group_table():
        data = gcs_pb2.PlacementGroupTableData.FromString(raw)
        creator = ray.ActorID(data.creator_actor_id) if data.creator_actor_id else None
        groups.append(
            PlacementGroupInfo(
                group_id=data.placement_group_id.hex(),
                state=states.Name(data.state),
                creator=None if creator is None or creator.is_nil() else creator.hex(),
                creator_dead=data.creator_actor_dead,
                detached=data.is_detached,
                job=data.creator_job_id.hex(),
                bundles=tuple(dict(bundle.unit_resources) for bundle in data.bundles),
            )
        )
    return groups


def has_autoscaler() -> bool:
    """Whether the connected cluster has an autoscaler's cluster config (it may add nodes)."""
    return ray._private.state.state.get_cluster_config() is not None


# ---- OptunaSearch's private state (ray/tune/search/optuna/optuna_search.py) ------------------

# Opened from the storage URL, not pickled: a pickled copy would diverge from the storage.
_OPTUNA_LIVE_FIELDS = ("_ot_study", "_storage")


def optuna_study(searcher: OptunaSearch) -> optuna.Study:
    return searcher._ot_study


def optuna_trial(searcher: OptunaSearch, trial_id: str) -> optuna.Trial | None:
    """The Optuna trial Tune's ``trial_id`` was asked as, if the searcher knows it."""
    return searcher._ot_trials.get(trial_id)


def optuna_trial_numbers(searcher: OptunaSearch) -> set[int]:
    return {trial.number for trial in searcher._ot_trials.values()}


def mark_completed(searcher: OptunaSearch, trial_id: str) -> None:
    """Tune's trial counts as told, without telling Optuna anything."""
    searcher._completed_trials.add(trial_id)


def optuna_metrics(searcher: OptunaSearch) -> list[str]:
    """The reported metrics Optuna maximises."""
    metric = searcher._metric
    return [metric] if isinstance(metric, str) else list(metric)


def stored_trial(searcher: OptunaSearch, number: int) -> optuna.trial.FrozenTrial:
    """Trial ``number`` as the storage holds it now."""
    return searcher._storage.get_trial(_trial_id(searcher, number))


def _trial_id(searcher: OptunaSearch, number: int) -> int:
    study_id = searcher._storage.get_study_id_from_name(searcher._study_name)
    return searcher._storage.get_trial_id_from_study_id_trial_number(study_id, number)


def searcher_state(searcher: OptunaSearch) -> dict[str, Any]:
    """What to pickle: everything but the opened study and storage, and each Tune trial's
    Optuna trial as its number."""
    state = {k: v for k, v in searcher.__dict__.items() if k not in _OPTUNA_LIVE_FIELDS}
    state["_ot_trials"] = {tune_id: trial.number for tune_id, trial in searcher._ot_trials.items()}
    return state


def reopen_searcher(searcher: OptunaSearch, state: dict[str, Any], storage_url: str) -> None:
    """The inverse of :func:`searcher_state`: the study reopened from ``storage_url``."""
    import optuna  # heavy; Train controllers import this module and never need it

    numbers = state.pop("_ot_trials")
    searcher.__dict__.update(state)
    searcher._storage = optuna.storages.get_storage(storage_url)
    searcher._ot_study = optuna.load_study(
        study_name=searcher._study_name,
        storage=searcher._storage,
        sampler=searcher._sampler,
        pruner=optuna.pruners.NopPruner(),  # as OptunaSearch: ASHA stops trials, not Optuna
    )
    searcher._ot_trials = {
        tune_id: optuna.Trial(searcher._ot_study, _trial_id(searcher, number))
        for tune_id, number in numbers.items()
    }
