"""The Ray cluster a search runs on: joining or starting it, what one trial's workers ask of it,
and whether it can hold them.

Trials, the Original/Gold finetune jobs and the driver's evaluation tasks all take their shape
from here (``search.workers_per_trial``, ``cpus_per_worker``, ``gpus_per_trial``).
"""

from __future__ import annotations

import dataclasses
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import ray

from clear_ray.config import SearchConfig
from clear_ray.errors import ConfigError, SearchStopped
from clear_ray.kernels import kernel_env, missing_pins, pin_this_process
from clear_ray.runtime.ray_compat import has_autoscaler

# Defaults for the environment of every Ray process in a search (``ray.init``'s runtime_env);
# a variable already set in the user's environment wins.
RAY_ENV_DEFAULTS = {
    "TOKENIZERS_PARALLELISM": "false",
    # Train V2 polls its workers every 2 s by default, so a trial ended up to 2 s after its
    # last epoch; a poll is one small actor call per worker.
    "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.5",
    # One more process per trial, started while the worker imports its stack, that watches
    # for node drains. Without it a preempted worker still restarts from the last epoch
    # checkpoint (Ray tells preemptions from crashes by the actor's death cause).
    "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": "0",
    # Train's Prometheus metrics of controller states and report times, for Ray's Grafana
    # dashboards. With Ray's dashboard (search.ray_dashboard), ~3.8 s of CPU per trial
    # together (bench/run_overhead.py).
    "RAY_TRAIN_METRICS_ENABLED": "0",
}


HEAD_TIMEOUT_S = 10.0  # to open a TCP connection to RAY_ADDRESS's head


def ray_env_vars() -> dict[str, str]:
    return {name: os.environ.get(name, value) for name, value in RAY_ENV_DEFAULTS.items()}


def init_ray(search: SearchConfig) -> None:
    """Connects to the running Ray, else starts a local one (``search.ray_dashboard`` says
    whether with its dashboard). Worker output stays in Ray's session logs. A CPU search's
    kernels are pinned here, in this process and in every Ray process of the job
    (``search.pin_cpu_kernels``, clear_ray/kernels.py)."""
    pin_this_process(search)
    if ray.is_initialized():
        refuse_unpinned_ray(search)
        return
    address = os.environ.get("RAY_ADDRESS", "")
    refused = unanswered(address)
    if refused:
        raise RayStartFailed(refused, address)
    try:
        ray.init(
            log_to_driver=False,
            include_dashboard=search.ray_dashboard,
            runtime_env={"env_vars": {**ray_env_vars(), **kernel_env(search)}},
        )
    except Exception as error:  # Ray raises RuntimeError, ConnectionError, bare Exception...
        ray.shutdown()  # whatever of a local Ray had started
        raise RayStartFailed(str(error) or repr(error), address) from None


def unanswered(address: str) -> str | None:
    """Why the head at ``address`` (``RAY_ADDRESS``'s ``host:port`` form) takes no connection,
    or None. Ray itself retries a head that is not there for minutes on end; ``auto``,
    ``local`` and ``ray://`` addresses are left to Ray."""
    host, _, port = address.rpartition(":")
    if not host or "/" in address or not port.isdigit():
        return None
    try:
        socket.create_connection((host, int(port)), timeout=HEAD_TIMEOUT_S).close()
    except OSError as error:
        return f"no Ray head answers at {address} ({error.strerror or error})"
    return None


class RayStartFailed(SearchStopped):
    """Ray did not start here, or the cluster at ``RAY_ADDRESS`` did not answer: one line in
    place of Ray's traceback. On a loaded machine a local start can time out waiting for its
    own processes ("Deadline Exceeded"), and a second try usually works."""

    def __init__(self, reason: str, address: str) -> None:
        reason = (reason.strip().splitlines() or ["no reason given"])[0][:300]
        if address:
            what = f"could not join the Ray cluster at RAY_ADDRESS={address}: {reason}"
            then = "once the cluster is up (or without RAY_ADDRESS, for a local Ray)"
        else:
            what = f"could not start a local Ray: {reason}"
            then = "when the machine is less busy"
        super().__init__(f"{what}. Nothing was trained; run the same command again {then}")


def refuse_unpinned_ray(search: SearchConfig) -> None:
    """Refuses the Ray this process already started when its job lacks the search's kernel
    pins: its workers would build other models and evaluations under the cache names of pinned
    ones (with AVX-512 kernels every weight of a finetuned Original differed from the AVX2 build
    on the same machine, clear_ray/kernels.py)."""
    job_env = ray.get_runtime_context().runtime_env.get("env_vars") or {}
    missing = missing_pins(search, job_env)
    if missing:
        pins = ", ".join(f"{name}={value}" for name, value in sorted(missing.items()))
        raise ConfigError(
            f"search.pin_cpu_kernels: the Ray this process started runs its workers without "
            f"{pins}; start it with clear_ray.runtime.cluster.init_ray (or with these in "
            f"ray.init's runtime_env env_vars), or set search.pin_cpu_kernels=false"
        )


def worker_resources(search: SearchConfig) -> dict[str, float]:
    resources = {"CPU": search.cpus_per_worker}
    if search.gpus_per_trial > 0:
        resources["GPU"] = search.gpus_per_trial / search.workers_per_trial
    return resources


def check_cluster(search: SearchConfig) -> None:
    """Refuses a trial shape the connected cluster can never run (without an autoscaler).

    Without this check such a trial would wait for resources that never come.
    """
    if has_autoscaler():
        return  # an autoscaler's cluster config: it may add nodes (Train checks its maximum)
    nodes = [node["Resources"] for node in ray.nodes() if node["Alive"]]
    per_worker = worker_resources(search)
    for name, path in (("CPU", "search.workers_per_trial"), ("GPU", "search.gpus_per_trial")):
        need = per_worker.get(name, 0.0) * search.workers_per_trial
        total = sum(node.get(name, 0.0) for node in nodes)
        largest = max((node.get(name, 0.0) for node in nodes), default=0.0)
        if per_worker.get(name, 0.0) > largest or need > total:
            value = dataclasses.asdict(search)[path.split(".")[1]]
            raise ConfigError(
                f"{path}: {value:g} needs {need:g} {name} per trial "
                f"({search.workers_per_trial} worker(s) with {per_worker}); this cluster has "
                f"{total:g} {name} ({largest:g} on its largest node) and no autoscaler"
            )


def concurrent_trials(search: SearchConfig) -> int:
    """``search.max_concurrent``, or for 0 as many trials as the connected cluster's nodes hold
    at once (each trial's workers on whole nodes' CPUs and GPUs; at least 1).

    Why automatic: one trial's worker runs torch on one thread, so on 2 cores one trial at a
    time leaves a core idle, and a GPU cluster's user expects one trial per GPU. Counted on the
    nodes up now: an autoscaling cluster's user sets ``--max-concurrent`` for the nodes to come.
    """
    if search.max_concurrent:
        return search.max_concurrent
    per_worker = worker_resources(search)
    slots = 0
    for node in (node["Resources"] for node in ray.nodes() if node["Alive"]):
        slots += min(int(node.get(name, 0.0) / need + 1e-9) for name, need in per_worker.items())
    return max(1, slots // search.workers_per_trial)


@contextmanager
def local_ray(search: SearchConfig) -> Iterator[None]:
    """The Ray this process is connected to, else the running one or a local one for the
    duration."""
    if ray.is_initialized():
        refuse_unpinned_ray(search)
        yield
        return
    init_ray(search)
    try:
        yield
    finally:
        ray.shutdown()


def where() -> dict[str, Any]:
    """Where a task ran: for the driver's log, and for tests that it was not the driver."""
    context = ray.get_runtime_context()
    return {
        "node": context.get_node_id(),
        "pid": os.getpid(),
        "resources": context.get_assigned_resources(),
    }


def room_for(search: SearchConfig, jobs: int, wait_s: float = 15.0) -> bool:
    """Whether the cluster's free resources hold ``jobs`` trial-shaped worker groups at once.

    Waits up to ``wait_s`` for them when the cluster's total could: a job that has just ended
    (the pretrained base's) frees its placement group asynchronously, a few seconds later."""
    needed = {
        name: jobs * search.workers_per_trial * amount
        for name, amount in worker_resources(search).items()
    }

    def holds(resources: dict[str, float]) -> bool:
        return all(resources.get(name, 0.0) >= amount for name, amount in needed.items())

    if not holds(ray.cluster_resources()):
        return False
    deadline = time.monotonic() + wait_s
    while not holds(ray.available_resources()):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.5)
    return True


def side_by_side(jobs: dict[str, Callable[[], Any]]) -> dict[str, Any]:
    """Each job in its own thread (Train's ``fit`` runs outside the main thread, as under Tune);
    their results, or the first job's error once all have ended. Daemon threads: an interrupted
    driver exits at once, and Ray's shutdown ends the jobs it owns."""
    results: dict[str, Any] = {}
    errors: dict[str, BaseException] = {}

    def run(name: str, job: Callable[[], Any]) -> None:
        try:
            results[name] = job()
        except BaseException as error:  # re-raised in the caller's thread
            errors[name] = error

    threads = [threading.Thread(target=run, args=item, daemon=True) for item in jobs.items()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for name in jobs:
        if name in errors:
            raise errors[name]
    return {name: results[name] for name in jobs}
