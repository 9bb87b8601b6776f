"""Per-method hyperparameters: each method declares the ``method.*`` fields it reads; its
runs log only those, and a search space that searches another one is refused."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from pyarrow.fs import LocalFileSystem

from clear_ray.config import METHOD_FIELDS, Config, MethodConfig
from clear_ray.errors import ConfigError
from clear_ray.methods import METHODS, check_space_fields, get_method, method_params
from clear_ray.methods.base import LossInputs, SequenceScores
from clear_ray.search.space import SEARCH_SPACE_DIR, load_space
from clear_ray.search.trial_logger import TrialLogger
from clear_ray.tracking import SearchTracker
from clear_ray.train.selection import Thresholds

VIEWS = ("forget", "retain", "idk")


def every_input() -> LossInputs:
    """Policy and reference scores, distributions and hidden states of every view."""
    generator = torch.Generator().manual_seed(0)

    def scores() -> SequenceScores:
        return SequenceScores(-torch.rand(3, generator=generator) * 5, torch.tensor([2, 3, 4]))

    def logprobs() -> torch.Tensor:
        return torch.log_softmax(torch.randn(5, 7, generator=generator), dim=-1)

    def hidden() -> torch.Tensor:
        return torch.randn(5, 4, generator=generator)

    return LossInputs(
        policy={view: scores() for view in VIEWS},
        reference={view: scores() for view in VIEWS},
        policy_logprobs={view: logprobs() for view in VIEWS},
        reference_logprobs={view: logprobs() for view in VIEWS},
        policy_hidden={view: hidden() for view in VIEWS},
        reference_hidden={view: hidden() for view in VIEWS},
    )


def changed(config: MethodConfig, path: str) -> MethodConfig:
    """``config`` with field ``path`` moved to another valid value."""
    name = path.removeprefix("method.")
    value = getattr(config, name)
    return dataclasses.replace(config, **{name: value + 1 if isinstance(value, int) else 0.37})


def passes(name: str, config: MethodConfig) -> list:
    """Every pass's loss (and SCRUB's max-pass epochs) under ``config``."""
    method = get_method(name)
    phases = [phase for phase in (method, method.ascent) if phase is not None]
    losses = [phase.loss(every_input(), config)[0].item() for phase in phases]
    return [*losses, [len(method.epoch_passes(epoch, config)) for epoch in range(4)]]


@pytest.mark.parametrize("name", METHODS.names())
def test_a_field_a_method_does_not_declare_changes_none_of_its_losses(name: str) -> None:
    config = MethodConfig(name)
    for path in set(METHOD_FIELDS) - set(get_method(name).reads):
        assert passes(name, changed(config, path)) == passes(name, config), path


@pytest.mark.parametrize("name", METHODS.names())
def test_every_declared_field_changes_a_loss_or_the_trainers_work(name: str) -> None:
    """``method.layer_fraction`` picks the layer the trainer reads hidden states from."""
    method = get_method(name)
    assert ("method.layer_fraction" in method.reads) == bool(method.hidden_views)
    config = MethodConfig(name)
    for path in set(method.reads) - {"method.layer_fraction"}:
        assert passes(name, changed(config, path)) != passes(name, config), path


def test_a_method_declaring_a_field_the_config_lacks_is_refused() -> None:
    npo = get_method("npo")
    with pytest.raises(ValueError, match=r"reads \['method.betta'\], not method fields"):
        dataclasses.replace(npo, reads=("method.betta",))


def test_a_run_logs_only_the_method_fields_its_method_reads() -> None:
    flat = Config().replace({"method.name": "npo"}).to_flat()
    logged = method_params(flat)
    assert [path for path in logged if path.startswith("method.")] == [
        "method.name",
        "method.beta",
        "method.alpha",
    ]
    assert {path: logged[path] for path in ("train.lr", "regularizer.l1", "train.epochs")} == {
        "train.lr": 1e-3,
        "regularizer.l1": 0.0,
        "train.epochs": 3,
    }
    assert len(logged) == len(flat) - len(METHOD_FIELDS) + 2


def test_a_trials_mlflow_params_hold_its_methods_fields_and_its_sampled_values(
    tmp_path: Path,
) -> None:
    cfg = Config().replace({"output_dir": str(tmp_path), "method.name": "ga"})
    tracker = SearchTracker(cfg)
    tracker.start_parent("s", {}, {})
    thresholds = Thresholds("log_forget_quality", 0.6, retain_floor=0.2)
    logger = TrialLogger(
        tracker, cfg.to_flat(), tmp_path / "adapters", thresholds, 3, {}, str(tmp_path / "runs")
    )
    storage = SimpleNamespace(
        storage_filesystem=LocalFileSystem(), trial_fs_path=str(tmp_path / "ray" / "t1")
    )
    trial = SimpleNamespace(
        trial_id="t1",
        config={"train.lr": 0.004},
        last_result={"epoch": 3},
        local_path=str(tmp_path / "staging" / "t1"),
        storage=storage,
    )
    logger.on_trial_start(0, [], trial)
    logger.on_trial_complete(0, [], trial)
    (run,) = tracker.children()
    params = run.data.params
    assert params["method.name"] == "ga" and params["train.lr"] == "0.004"
    assert [path for path in params if path.startswith("method.")] == ["method.name"]


@pytest.mark.parametrize(
    ("name", "space", "message"),
    [
        ("ga", ("train.lr", "method.beta"), "s.yaml: ga does not read method.beta; its method "
         "fields: none"),
        ("npo", ("method.beta", "method.gamma"), "s.yaml: npo does not read method.gamma; its "
         "method fields: method.beta, method.alpha"),
    ],
)  # fmt: skip
def test_a_space_searching_a_field_its_method_ignores_is_refused_naming_both(
    name: str, space: tuple[str, ...], message: str
) -> None:
    with pytest.raises(ConfigError) as error:
        check_space_fields(name, space, "s.yaml")
    assert str(error.value) == message


@pytest.mark.parametrize("name", METHODS.names())
def test_every_shipped_space_searches_only_fields_its_method_reads(name: str) -> None:
    check_space_fields(name, tuple(load_space(name)), str(SEARCH_SPACE_DIR / f"{name}.yaml"))


def test_the_dry_run_shows_each_methods_fields_at_their_published_defaults() -> None:
    from clear_ray.pipeline.plan import method_fields_line

    cfg = Config()
    assert method_fields_line(cfg, "scrub", SEARCH_SPACE_DIR / "scrub.yaml") == (
        "# method fields scrub reads (published default, else the config's): method.alpha=0.5, "
        "method.gamma=1.0, method.kl_temperature=4.0, method.scrub_max_epochs=1"
    )
    assert method_fields_line(cfg, "ga", SEARCH_SPACE_DIR / "ga.yaml").endswith(": none")
