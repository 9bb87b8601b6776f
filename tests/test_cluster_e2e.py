"""Searches on a two-node Ray cluster shaped like cluster.yaml, on this machine.

The head has no CPUs (as the documented CPU head whose work is orchestration) and a worker
node has them; the search is submitted as on a real cluster (``RAY_ADDRESS`` and
``--storage-path``). (a) Original/Gold, their evaluations and the trial run on the worker.
(b) The worker node is lost after a trial's first epoch and another joins: the trial goes on
from its epoch checkpoint on the new node and Tune, Optuna and MLflow each record it once.
"""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from e2e_scale import QUICK_REFERENCES, SESSION_SET

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

WORKER_CPUS = 2
TINY = (  # one short trial, a short pretraining and finetune, a proxy evaluation per epoch,
    # no generation, no confirm runs or robustness checks after the search; no retain-collapse
    # stop (references this short are weak: the node-loss trial must run all its epochs)
    "--method", "gd", "--num-samples", "1", "--scheduler", "none", "--confirm-seeds", "0",
    "--retain-floor", "0",
    "--robustness", "none", *QUICK_REFERENCES,
    "--set", "eval.generate=false", "--set", "eval.proxy_items=4",
    "--set", "search.worker_start_timeout_s=120",  # a retry that cannot start fails sooner
    *SESSION_SET,
)  # fmt: skip
REFERENCE_TASKS = {
    "pretrained_base", "original_model", "gold_model", "original_evaluation", "gold_evaluation",
    "original_full_evaluation", "gold_full_evaluation",
}  # fmt: skip


@pytest.fixture(scope="module")
def cluster():
    """A head without CPUs and one worker node with them; torn down whatever happens.

    Not advertised in /tmp/ray/ray_current_cluster, where Cluster writes its address: a
    plain ``ray.init()`` of any other process on the machine would join it, and lose its
    trials when the test removes the node. Searches reach it through ``RAY_ADDRESS`` only.
    """
    from unittest import mock

    from ray.cluster_utils import Cluster

    with mock.patch("ray._private.utils.write_ray_address"):
        cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    try:
        cluster.add_node(num_cpus=WORKER_CPUS)
        cluster.wait_for_nodes()
        yield cluster
    finally:
        cluster.shutdown()


@pytest.fixture(scope="module")
def places(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("cluster")
    return {"output": root / "out", "storage": root / "storage"}


def worker_node(cluster):
    (node,) = cluster.worker_nodes
    return node


def command(places: dict[str, Path], name: str, epochs: int) -> list[str]:
    return [
        sys.executable, "-m", "clear_ray.tune", "--output-dir", str(places["output"]),
        "--storage-path", str(places["storage"]), "--experiment", name, "--epochs", str(epochs),
        *TINY,
    ]  # fmt: skip


def environment(cluster) -> dict[str, str]:
    return {**os.environ, "RAY_ADDRESS": cluster.address}


def search_name(log: str) -> str:
    return re.search(r"search (\S+): files in", log).group(1)


def epoch_reports(places: dict[str, Path], name: str) -> list[dict]:
    """The trial's results as Tune stored them under the storage path."""
    (results,) = (places["storage"] / name / "ray" / "gd").glob("*/result.json")
    return [json.loads(line) for line in results.read_text().splitlines()]


@pytest.fixture(scope="module")
def first_search(cluster, places) -> tuple[str, str, str]:
    """(search name, stderr, the worker's node id) of a search on the intact cluster."""
    node = worker_node(cluster).node_id
    run = subprocess.run(
        command(places, "cluster", epochs=1),
        env=environment(cluster),
        capture_output=True,
        text=True,
        timeout=800,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    return search_name(run.stderr), run.stderr, node


def test_references_and_trials_run_on_the_worker_node(first_search, places) -> None:
    name, log, node = first_search
    ran = dict(re.findall(r"\[clear_ray\] (\w+): ran in pid \d+ on node (\w+)", log))
    assert set(ran) == REFERENCE_TASKS
    assert set(ran.values()) == {node}  # never the head: it has no CPUs
    reports = epoch_reports(places, name)
    assert [r["epoch"] for r in reports] == [1.0]
    assert {r["train_node"] for r in reports} == {node}
    # Published under the storage path, where the next search (on any node) finds them.
    # The pretrained base, Original and Gold.
    assert len(list((places["storage"] / "references" / "models").glob("*.complete"))) == 3


@pytest.fixture(scope="module")
def node_loss(cluster, places) -> tuple[str, str, str]:
    """(search name, lost node id, new node id): the worker node removed after epoch 1.

    After the first search, if it ran: the driver finds its references on this machine's disk
    (both nodes share it), else the jobs find them in the store."""
    lost = worker_node(cluster)
    driver = subprocess.Popen(
        command(places, "node_loss", epochs=3),
        env=environment(cluster),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    log, new = [], None
    try:
        for line in driver.stderr:
            log.append(line)
            if "epoch 1:" in line and new is None:
                cluster.remove_node(lost)
                new = cluster.add_node(num_cpus=WORKER_CPUS).node_id
        driver.wait(timeout=600)
    finally:
        driver.kill()
    text = "".join(log)
    (places["output"].parent / "node_loss.log").write_text(text)  # for a failure's reader
    assert driver.returncode == 0, text[-3000:]
    assert new is not None, "the trial never reported epoch 1"
    return search_name(text), lost.node_id, new


def test_the_trial_goes_on_from_its_checkpoint_on_the_new_node(node_loss, places) -> None:
    name, lost, new = node_loss
    reports = epoch_reports(places, name)
    assert [r["epoch"] for r in reports] == [1.0, 2.0, 3.0]  # none repeated, none lost
    assert [r["train_node"] for r in reports] == [lost, new, new]
    with (places["output"] / "searches" / name / "gd" / "trials.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [(row["status"], row["stopped_at"]) for row in rows] == [("done", "3")]


def test_optuna_and_mlflow_record_the_trial_once(node_loss, places) -> None:
    import optuna
    from mlflow.tracking import MlflowClient

    name, _, _ = node_loss
    root = places["output"] / "searches" / name
    study = optuna.load_study(study_name=f"{name}/gd", storage=f"sqlite:///{root / 'optuna.db'}")
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE]
    client = MlflowClient(f"sqlite:///{places['output'] / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("node_loss")
    runs = client.search_runs([experiment.experiment_id])
    (child,) = [run for run in runs if "mlflow.parentRunId" in run.data.tags]
    assert child.info.status == "FINISHED"
    history = client.get_metric_history(child.info.run_id, "retain_metric")
    assert sorted(metric.step for metric in history) == [1, 2, 3]
