"""The tracker against a real `mlflow server` that stops and comes back: writes wait in the
search's outbox, in order, and reach the server when it is back; an outage past
tracking.max_outage_s is reported; errors of a server that is up are still raised."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from clear_ray.config import Config
from clear_ray.mlflow_server import mlflow_server
from clear_ray.net import free_port
from clear_ray.search.outbox import OUTBOX_FILE, Outbox, pending_child
from clear_ray.tracking import (
    PARENT_TAG,
    PROBE_INTERVAL_S,
    TRIAL_TAG,
    SearchTracker,
    TrackingOutage,
)

pytestmark = pytest.mark.slow


def tracker_of(url: str, root: Path, max_outage_s: float) -> SearchTracker:
    cfg = Config().replace(
        {
            "output_dir": str(root),
            "tracking.tracking_uri": url,
            "tracking.experiment": "outage",
            "tracking.max_outage_s": max_outage_s,
        }
    )
    return SearchTracker(cfg, root / OUTBOX_FILE)


def test_writes_wait_in_the_outbox_and_reach_the_server_when_it_is_back(tmp_path: Path) -> None:
    store, artifacts, port = f"sqlite:///{tmp_path / 'mlflow.db'}", tmp_path / "art", free_port()
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text("{}")
    with mlflow_server(store, artifacts, port) as url:
        tracker = tracker_of(url, tmp_path, max_outage_s=600)
        parent = tracker.start_parent("search", {"train.epochs": 2}, {})
    # The server is gone: a trial starts, reports two epochs and completes.
    started = time.monotonic()
    child = tracker.start_child("t1", {"train.lr": 0.1})
    tracker.log_metrics(child, {"retain_metric": 0.5}, step=1)
    tracker.log_metrics(child, {"retain_metric": 0.4}, step=2)
    tracker.log_artifacts(child, [adapter], "best_adapter")
    tracker.finish(child, "FINISHED", {"stopped": "completed"})
    assert time.monotonic() - started < 30  # one failed call with bounded retries, no more
    assert child == pending_child("t1")
    kept = Outbox(tmp_path / OUTBOX_FILE).pending()
    assert [op["op"] for op in kept] == ["start_child", "metrics", "metrics", "artifacts", "status"]
    assert not tracker.heartbeat()  # away, but not past the limit

    with mlflow_server(store, artifacts, port):
        time.sleep(PROBE_INTERVAL_S)  # the next probe is due
        assert not tracker.heartbeat()
        assert not (tmp_path / OUTBOX_FILE).exists()
        client = MlflowClient(url)
        runs = client.search_runs(
            [tracker.experiment_id], filter_string=f"tags.`{PARENT_TAG}` = '{parent}'"
        )
        (run,) = runs
        assert run.data.tags[TRIAL_TAG] == "t1"
        assert run.data.params == {"train.lr": "0.1"}
        assert run.data.tags["stopped"] == "completed"
        assert run.info.status == "FINISHED"
        history = client.get_metric_history(run.info.run_id, "retain_metric")
        assert [(m.step, m.value) for m in history] == [(1, 0.5), (2, 0.4)]
        assert [a.path for a in client.list_artifacts(run.info.run_id, "best_adapter")] == [
            "best_adapter/adapter_config.json"
        ]
        # Delivered twice (a driver killed before it rewrote the outbox): still one child.
        tracker.start_child("t1", {"train.lr": 0.1})
        assert tracker.child_ids() == {"t1": run.info.run_id}
        with pytest.raises(MlflowException):  # an error of a server that is up is an error
            tracker.log_metrics("no-such-run", {"x": 1.0})


def test_an_outage_past_the_limit_is_reported(tmp_path: Path) -> None:
    store, artifacts = f"sqlite:///{tmp_path / 'mlflow.db'}", tmp_path / "art"
    with mlflow_server(store, artifacts) as url:
        tracker = tracker_of(url, tmp_path, max_outage_s=2)
        parent = tracker.start_parent("search", {}, {})
    tracker.log_metrics(parent, {"best": 1.0})  # kept: the search goes on
    assert not tracker.heartbeat()
    time.sleep(2.5)
    assert tracker.heartbeat()
    assert tracker.outage.uri == url and tracker.outage.away_s > 2 and tracker.outage.pending == 1
    started = time.monotonic()
    with pytest.raises(TrackingOutage):  # a call that needs an answer does not wait any more
        tracker.children()
    assert time.monotonic() - started < 1


def test_a_call_kept_after_its_pending_child_was_made_names_the_run(tmp_path: Path) -> None:
    """A trial that started while the server was away keeps its placeholder; once the child
    run is made, a call kept in a second outage must name the run, or the next driver (which
    never saw the placeholder made) cannot deliver it."""
    store, artifacts, port = f"sqlite:///{tmp_path / 'mlflow.db'}", tmp_path / "art", free_port()
    with mlflow_server(store, artifacts, port) as url:
        tracker = tracker_of(url, tmp_path, max_outage_s=600)
        tracker.start_parent("search", {}, {})
    child = tracker.start_child("t1", {})  # away: a placeholder
    with mlflow_server(store, artifacts, port):
        time.sleep(PROBE_INTERVAL_S)
        assert not tracker.heartbeat()  # back: the child run is made
    tracker.log_metrics(child, {"retain_metric": 0.5}, step=1)  # away again: kept
    (kept,) = Outbox(tmp_path / OUTBOX_FILE).pending()
    assert not kept["run_id"].startswith(pending_child(""))

    with mlflow_server(store, artifacts, port):
        resumed = tracker_of(url, tmp_path, max_outage_s=600)  # the next driver's
        resumed.wait_delivered()
        (run_id,) = tracker.child_ids().values()
        history = MlflowClient(url).get_metric_history(run_id, "retain_metric")
        assert [(m.step, m.value) for m in history] == [(1, 0.5)]
