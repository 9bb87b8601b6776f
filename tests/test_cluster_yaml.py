"""cluster.yaml (the AWS cluster for `ray up`) is valid for Ray and keeps its promises.

Everything here is offline. `prepare_config` only merges Ray's AWS defaults.yaml into the file
(no boto3 client, no AWS call: those happen in `ray up`'s bootstrap step, which is not run); the
schema test blocks sockets to prove it. What is not checked, because it needs AWS: that the
instance types, the AMI parameter and the image tag resolve, and the security group Ray creates
(it opens SSH 22 to 0.0.0.0/0 by itself; see the comment under `provider` in cluster.yaml).
"""

from __future__ import annotations

import copy
import shlex
import socket
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import ray
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

CLUSTER_YAML = Path(__file__).resolve().parents[1] / "cluster.yaml"
WORLD_CIDRS = ("0.0.0.0/0", "::/0")


@pytest.fixture(scope="module")
def raw() -> dict[str, Any]:
    return yaml.safe_load(CLUSTER_YAML.read_text())


@pytest.fixture(scope="module")
def prepared(raw: dict[str, Any]) -> dict[str, Any]:
    return prepare_config(copy.deepcopy(raw))


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError(f"network access attempted: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


def gpu_types(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        name: node_type
        for name, node_type in config["available_node_types"].items()
        if node_type["resources"].get("GPU", 0) > 0
    }


def is_spot(node_type: dict[str, Any]) -> bool:
    market = node_type["node_config"].get("InstanceMarketOptions", {})
    return market.get("MarketType") == "spot"


def strings(value: Any) -> list[str]:
    """Every key and scalar in a YAML tree, as text."""
    if isinstance(value, dict):
        return [text for key, item in value.items() for text in (str(key), *strings(item))]
    if isinstance(value, list):
        return [text for item in value for text in strings(item)]
    return [str(value)]


def test_schema_validates_offline(raw: dict[str, Any], no_network: None) -> None:
    validate_config(prepare_config(copy.deepcopy(raw)))


def test_schema_check_rejects_an_unknown_key(raw: dict[str, Any]) -> None:
    """The validation above has teeth: a misspelt key fails it."""
    broken = prepare_config(copy.deepcopy(raw))
    broken["idle_timeout_minute"] = 10
    with pytest.raises(jsonschema.ValidationError, match="idle_timeout_minute"):
        validate_config(broken)


def test_head_is_on_demand_and_every_gpu_worker_is_spot(prepared: dict[str, Any]) -> None:
    head = prepared["available_node_types"][prepared["head_node_type"]]
    assert not is_spot(head)
    assert "InstanceMarketOptions" not in head["node_config"]
    assert head["resources"].get("GPU", 0) == 0
    workers = gpu_types(prepared)
    assert workers
    assert all(is_spot(node_type) for node_type in workers.values()), sorted(workers)


def test_a_one_gpu_and_an_eight_gpu_type_that_scale_from_zero(prepared: dict[str, Any]) -> None:
    workers = gpu_types(prepared)
    assert {node_type["resources"]["GPU"] for node_type in workers.values()} >= {1, 8}
    for name, node_type in workers.items():
        assert node_type["min_workers"] == 0, name
        assert node_type["max_workers"] >= 1, name
        assert node_type["resources"]["CPU"] >= 1, name


def test_every_node_type_pins_its_ami(prepared: dict[str, Any]) -> None:
    """Without ImageId Ray falls back to an Ubuntu 18.04 Deep Learning AMI from years ago."""
    for name, node_type in prepared["available_node_types"].items():
        image_id = node_type["node_config"].get("ImageId", "")
        assert image_id.startswith(("ami-", "resolve:ssm:")), name


def test_image_is_current_ray_gpu_image(prepared: dict[str, Any]) -> None:
    docker = prepared["docker"]
    assert docker["image"] == f"rayproject/ray:{ray.__version__}-py311-gpu"
    images = [docker["image"], docker.get("head_image", ""), docker.get("worker_image", "")]
    for node_type in prepared["available_node_types"].values():
        images.append(node_type.get("docker", {}).get("worker_image", ""))
    assert not any("ray-ml" in image for image in images), images


def test_shm_size_is_set_for_head_and_workers(prepared: dict[str, Any]) -> None:
    docker = prepared["docker"]
    shared = docker.get("run_options", [])

    def has_shm(options: list[str]) -> bool:
        return any(option.startswith("--shm-size") for option in [*shared, *options])

    assert has_shm(docker.get("head_run_options", []))
    for name, node_type in gpu_types(prepared).items():
        own = node_type.get("docker", {}).get("worker_run_options")
        assert has_shm(docker.get("worker_run_options", []) if own is None else own), name


def test_setup_installs_the_mounted_project(prepared: dict[str, Any]) -> None:
    mounts = {remote: local for remote, local in prepared["file_mounts"].items()}
    project = next(remote for remote, local in mounts.items() if local in (".", "./"))
    for key in ("head_setup_commands", "worker_setup_commands"):
        installs = [cmd for cmd in prepared[key] if "pip install" in cmd and project in cmd]
        assert installs, (key, prepared[key])
        assert "clear_ray" in installs[0]


def test_the_head_installs_the_ui_extra(prepared: dict[str, Any]) -> None:
    """The search runs on the head and ends printing an optuna-dashboard command to run there."""
    installs = [cmd for cmd in prepared["head_setup_commands"] if "pip install" in cmd]
    assert any("clear_ray[ui]" in shlex.split(cmd)[-1] for cmd in installs), installs


def test_no_rule_or_option_opens_anything_to_the_world(raw: dict[str, Any]) -> None:
    found = [text for text in strings(raw) if any(cidr in text for cidr in WORLD_CIDRS)]
    assert not found
    rules = raw["provider"].get("security_group", {}).get("IpPermissions", [])
    for rule in rules:
        assert not rule.get("IpRanges") and not rule.get("Ipv6Ranges"), rule


def test_mlflow_runs_on_the_head_bound_to_localhost(prepared: dict[str, Any]) -> None:
    servers = [cmd for cmd in prepared["head_setup_commands"] if "mlflow server" in cmd]
    assert len(servers) == 1, prepared["head_setup_commands"]
    tokens = shlex.split(servers[0])
    assert tokens[tokens.index("--host") + 1] == "127.0.0.1"
    assert tokens[tokens.index("--port") + 1] == "5000"
    assert tokens[tokens.index("--backend-store-uri") + 1].startswith("sqlite:////home/ray/")
    assert not any("mlflow server" in cmd for cmd in prepared["worker_setup_commands"])


def test_idle_workers_are_shut_down(raw: dict[str, Any]) -> None:
    assert isinstance(raw.get("idle_timeout_minutes"), int)
    assert 0 < raw["idle_timeout_minutes"] <= 60
    assert raw["provider"].get("cache_stopped_nodes") is False


TOKEN_DIR = "/home/ray/ray_auth"
TOKEN = f"{TOKEN_DIR}/token"


def token_commands(prepared: dict[str, Any]) -> list[str]:
    return [cmd for cmd in prepared["head_setup_commands"] if TOKEN in cmd]


def test_the_token_is_made_once_on_the_head_and_readable_by_its_owner_only(
    prepared: dict[str, Any], tmp_path: Path
) -> None:
    """The head's token command, run here on a stand-in folder: 256 random bits, mode 0600,
    and a second `ray up` keeps the token the workers already have."""
    (command,) = token_commands(prepared)
    assert not any(TOKEN in cmd for cmd in prepared["worker_setup_commands"])
    local = command.replace(TOKEN_DIR, str(tmp_path))
    subprocess.run(["bash", "-c", local], check=True)
    token = (tmp_path / "token").read_text()
    assert len(token) == 64 and int(token, 16) >= 0
    assert (tmp_path / "token").stat().st_mode & 0o777 == 0o600
    subprocess.run(["bash", "-c", local], check=True)
    assert (tmp_path / "token").read_text() == token


def test_the_token_folder_is_mounted_on_every_node_and_never_local(
    prepared: dict[str, Any],
) -> None:
    """A file mount: `ray up` creates it on the head, the autoscaler copies the head's folder
    (with the token) to every worker. The checkout's folder carries no token."""
    local = CLUSTER_YAML.parent / prepared["file_mounts"][TOKEN_DIR]
    assert local.is_dir()
    assert not (local / "token").exists()
    assert "deploy/ray_auth/token" in (CLUSTER_YAML.parent / ".gitignore").read_text()


@pytest.mark.parametrize("key", ["head_start_ray_commands", "worker_start_ray_commands"])
def test_ray_starts_with_token_authentication(prepared: dict[str, Any], key: str) -> None:
    (start,) = [cmd for cmd in prepared[key] if "ray start" in cmd]
    setup = start.partition("ray start")[0]
    exports = dict(
        token.split("=", 1) for token in shlex.split(setup.split(";")[0]) if "=" in token
    )
    assert setup.startswith("export ")
    assert exports == {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": TOKEN}


def test_dashboard_listens_on_localhost_only(prepared: dict[str, Any]) -> None:
    """Reached through `ray dashboard`'s SSH tunnel, never through an open port."""
    (start,) = [cmd for cmd in prepared["head_start_ray_commands"] if "ray start" in cmd]
    hosts = [
        arg.split("=", 1)[1] for arg in shlex.split(start) if arg.startswith("--dashboard-host")
    ]
    assert hosts in ([], ["127.0.0.1"]) and "0.0.0.0" not in start
