"""The registry's model: Original with the best unlearning adapter merged in, as an MLflow pyfunc.

``mlflow.pyfunc.load_model("models:/clear_ray-<method>@best").predict(df)`` answers each row's
``question`` (about its ``image`` when given: PNG/JPEG bytes, or base64 text over ``mlflow models
serve``; ``serving_input.py`` reads and checks the rows) with the same loading
(``models/loading.py``), prompt rendering (``data/collate.py``) and greedy generation
(``eval/generation.py``) that the evaluation scored, so a user sees what the metrics measured.

Original travels with the model when it is small (the tiny preset's few MB); a large one (a 7B
checkpoint, ~14 GB) is referenced by its hub id or path, checked when the model loads and
replaceable there: ``load_model(uri, model_config={"original": "<path or hub id>"})``.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import mlflow.pyfunc
import pandas as pd

from clear_ray.console import format_value
from clear_ray.runtime.staging import DriverDir
from clear_ray.serving_input import read_batch, read_max_new_tokens

if TYPE_CHECKING:
    from clear_ray.tracking import SearchTracker

ADAPTER = "adapter"  # artifact keys of the model
ORIGINAL = "original"
CARD = "README.md"  # the model card, in the adapter folder (replaces peft's empty template)
ORIGINAL_ARTIFACT_MAX_BYTES = 2**30  # above this Original is referenced, not copied
BEST_ALIAS = "best"
MAX_NEW_TOKENS = 64
BATCH_SIZE = 8


class UnlearnedModel(mlflow.pyfunc.PythonModel):
    """Original + adapter, merged on load; ``predict`` returns one answer string per row."""

    def load_context(self, context) -> None:
        from clear_ray.models.loading import load_for_evaluation

        config = context.model_config
        original = context.artifacts.get(ORIGINAL) or check_original(config[ORIGINAL])
        model, self.processor = load_for_evaluation(
            original, context.artifacts[ADAPTER], config["precision"]
        )
        self.model = model.eval()
        self.max_new_tokens = int(config["max_new_tokens"])

    def predict(
        self, context, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> list[str]:
        from clear_ray.data.collate import Collator
        from clear_ray.eval.generation import generate_greedy

        examples = read_batch(model_input)  # every row checked before any generation
        max_new_tokens = read_max_new_tokens(params, self.max_new_tokens)
        return generate_greedy(
            self.model, Collator(self.processor), examples, max_new_tokens, BATCH_SIZE
        )


def check_original(value: str) -> str:
    """A referenced Original must be a directory here or a hub id; else say how to point at it."""
    path = Path(value).expanduser()
    if path.is_dir():
        return str(path)
    looks_like_hub_id = value.count("/") == 1 and not value.startswith((".", "/", "~"))
    if looks_like_hub_id and not path.exists():
        return value
    raise FileNotFoundError(
        f"Original checkpoint {value!r} is not on this machine. Copy it here or load with "
        f'mlflow.pyfunc.load_model(uri, model_config={{"original": "<path or hub id>"}}).'
    )


@dataclass(frozen=True)
class ModelCard:
    """What the card (and the registry version's description) tells about the model."""

    method: str
    trial: str
    search: str
    base_model: str  # preset name
    original: str  # path or hub id of Original
    data: str
    forget_split: str
    modality: str
    objective: str
    objective_value: float
    hyperparameters: Mapping[str, Any]  # the tuned ones, as the trial used them
    settings: Mapping[str, Any]  # the fixed training settings (train.*, lora.*)
    metrics: Mapping[str, float]  # the full (final) evaluation
    feasible: bool  # at the full evaluation, against Original's full evaluation
    folds: Mapping[str, Any] | None = None  # folds.json when the search split persons

    def description(self) -> str:
        """One paragraph for the registry version's Description."""
        return (
            f"{self.method} unlearning adapter of search `{self.search}`, trial `{self.trial}` "
            f"(`{self.objective}` = {self.objective_value:.4g}, "
            f"{'feasible' if self.feasible else 'infeasible'} at the full evaluation), merged "
            f"into Original `{self.original}` ({self.base_model}) on load. "
            f"`predict` takes a DataFrame with a `question` column and an optional `image` "
            f"column (PNG/JPEG bytes; base64 text over REST; null for a text question) and "
            f"returns one greedy answer per row."
        )

    def markdown(self) -> str:
        """The model card: base model, data, method, hyperparameters, metrics."""
        lines = [
            f"# clear_ray-{self.method} (search {self.search}, trial {self.trial})",
            "",
            "A LoRA adapter that unlearns the CLEAR forget set from Original "
            "(arXiv 2410.18057), found by a clear_ray hyperparameter search.",
            "",
            "## Base model",
            f"- preset: `{self.base_model}`",
            f"- Original (the adapter's base): `{self.original}`; the MLflow model carries it "
            f"when under {ORIGINAL_ARTIFACT_MAX_BYTES // 2**20} MiB, else loads it from there",
            "",
            "## Data",
            f"- dataset: `{self.data}`",
            f"- forget split: `{self.forget_split}`, modality: `{self.modality}`",
        ]
        if self.folds:
            lines += [
                f"- person folds (seed {self.folds.get('seed')}): "
                f"{len(self.folds.get('selection', []))} persons chose the trial, "
                f"{len(self.folds.get('report', []))} report its metrics",
            ]
        lines += ["", "## Method", f"- `{self.method}`", "", "## Hyperparameters", "Tuned:"]
        lines += [
            f"- `{name}`: {format_value(value)}" for name, value in self.hyperparameters.items()
        ]
        lines += ["", "Fixed:"]
        lines += [f"- `{name}`: {format_value(value)}" for name, value in self.settings.items()]
        lines += [
            "",
            "## Metrics",
            f"Selection: `{self.objective}` = {format_value(self.objective_value)} (best epoch); "
            f"{'feasible' if self.feasible else 'not feasible'} at the full evaluation.",
            "",
            "| metric | value |",
            "|---|---|",
        ]
        lines += [
            f"| `{name}` | {format_value(value)} |" for name, value in sorted(self.metrics.items())
        ]
        lines += [
            "",
            "## Use",
            "```python",
            "import mlflow, pandas as pd",
            f'model = mlflow.pyfunc.load_model("models:/clear_ray-{self.method}@best")',
            'model.predict(pd.DataFrame({"question": ["Who is Jane Doe?"]}))',
            "```",
            "",
        ]
        return "\n".join(lines)

    def tags(self) -> dict[str, str]:
        """The registry version's tags."""
        tags = {
            "search": self.search,
            "trial": self.trial,
            "method": self.method,
            "objective": self.objective,
            "objective_value": f"{self.objective_value:.6g}",
            "feasible": str(self.feasible),
            "base_model": self.base_model,
            "original": self.original,
        }
        if self.folds:
            tags["folds"] = (
                f"seed {self.folds.get('seed')}, report_fraction "
                f"{self.folds.get('report_fraction')}: selection "
                f"{', '.join(self.folds.get('selection', []))}; report "
                f"{', '.join(self.folds.get('report', []))}"
            )[:5000]  # MLflow's tag value limit
        return tags


def directory_bytes(directory: Path) -> int:
    return sum(path.stat().st_size for path in directory.rglob("*") if path.is_file())


def original_reference(
    original_model: str | DriverDir, brought: str, max_bytes: int = ORIGINAL_ARTIFACT_MAX_BYTES
) -> str:
    """What the registered model names as Original: a brought hub id as it is (it works on any
    machine); a small checkpoint as a directory of this node (``save_model`` copies it into the
    model); a large one by its path (checked when the model loads)."""
    from clear_ray.runtime.staging import on_this_node

    if brought and not Path(brought).expanduser().is_dir():
        return brought
    if isinstance(original_model, DriverDir):
        if sum(size for _, size in original_model.files) <= max_bytes:
            return on_this_node(original_model)
        return original_model.path
    return original_model


@contextmanager
def quiet_save() -> Iterator[None]:
    """Silence two MLflow notices that are choices here: no input example (MLflow would load
    the whole model to try it) and a pickled ``python_model`` (a class of this package)."""
    pyfunc_logger = logging.getLogger("mlflow.pyfunc")
    level = pyfunc_logger.level
    pyfunc_logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*An input example was not provided")
            yield
    finally:
        pyfunc_logger.setLevel(level)


def save_model(
    path: Path,
    adapter: Path,
    original: str,
    card: ModelCard,
    precision: str = "fp32",
    max_new_tokens: int = MAX_NEW_TOKENS,
    original_max_bytes: int = ORIGINAL_ARTIFACT_MAX_BYTES,
) -> Path:
    """Write the pyfunc model to ``path``: adapter with its card, Original (copied when small,
    else referenced), clear_ray's code, pinned requirements (no slow inference of them)."""
    import mlflow
    import peft
    import torch
    import transformers
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, DataType, ParamSchema, ParamSpec, Schema

    # No input schema: clear_ray/serving_input.py checks the rows (and says why not MLflow).
    signature = ModelSignature(
        outputs=Schema([ColSpec(DataType.string)]),
        params=ParamSchema([ParamSpec("max_new_tokens", DataType.long, max_new_tokens)]),
    )
    requirements = [
        f"{module.__name__}=={module.__version__.split('+')[0]}"
        for module in (mlflow, torch, transformers, peft)
    ] + ["pillow", "pandas"]
    small = Path(original).is_dir() and directory_bytes(Path(original)) <= original_max_bytes
    with tempfile.TemporaryDirectory() as scratch:
        carded = Path(scratch) / ADAPTER
        shutil.copytree(adapter, carded)
        (carded / CARD).write_text(card.markdown(), encoding="utf-8")
        code = Path(scratch) / "code"
        package = Path(__file__).resolve().parent
        shutil.copytree(package, code / package.name, ignore=shutil.ignore_patterns("__pycache__"))
        artifacts = {ADAPTER: str(carded), **({ORIGINAL: original} if small else {})}
        with quiet_save():
            mlflow.pyfunc.save_model(
                path=str(path),
                python_model=UnlearnedModel(),
                artifacts=artifacts,
                code_paths=[str(code / package.name)],
                signature=signature,
                pip_requirements=requirements,
                model_config={
                    ORIGINAL: original,
                    "precision": precision,
                    "max_new_tokens": max_new_tokens,
                },
                metadata={"method": card.method, "search": card.search, "trial": card.trial},
            )
    return path


def best_model_card(
    cfg, search, best, metrics: Mapping[str, float], feasible: bool, original: str
) -> ModelCard:
    """The card of a search's best trial (``pipeline.final``): ``best`` is its
    ``TrialRow``, ``metrics`` its full evaluation; ``folds.json`` is read when the search
    split persons into folds."""
    folds_file = search.dirs.root / "folds.json"
    folds = json.loads(folds_file.read_text()) if folds_file.is_file() else None
    return ModelCard(
        method=cfg.method.name,
        trial=best.trial,
        search=search.state.name,
        base_model=cfg.model.preset,
        original=original,
        data=search.refs.source,
        forget_split=cfg.data.forget_split,
        modality=cfg.data.modality,
        objective=cfg.search.objective,
        objective_value=float(best.best_objective),
        hyperparameters={**best.params, "best_epoch": best.best_epoch},
        settings={
            name: value
            for name, value in cfg.to_flat().items()
            if name.startswith(("train.", "lora.")) and name not in best.params
        },
        metrics=dict(metrics),
        feasible=feasible,
        folds=folds,
    )


def register_best(
    tracker: SearchTracker,
    model_name: str,
    run_id: str,
    adapter: Path,
    original: str,
    card: ModelCard,
    precision: str = "fp32",
) -> int:
    """Log the model to the trial's run and register it as ``model_name@best``; the card also
    replaces peft's template in the local adapter and the run's ``best_adapter/``."""
    from clear_ray.tracking import ADAPTER_ARTIFACT

    (adapter / CARD).write_text(card.markdown(), encoding="utf-8")
    tracker.log_artifacts(run_id, [adapter / CARD], artifact_path=ADAPTER_ARTIFACT)
    with tempfile.TemporaryDirectory() as scratch:
        model_dir = save_model(Path(scratch) / "model", adapter, original, card, precision)
        return tracker.register_model(
            model_name, run_id, model_dir, card.tags(), card.description(), BEST_ALIAS
        )
