"""The registered model loads from ``models:/clear_ray-<method>@best`` and answers; its version
carries the alias, tags, description and model card; a large Original is referenced and checked."""

from __future__ import annotations

import base64
import io
import json
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import mlflow
import pandas as pd
import pytest
import torch
from local_servers import serving
from peft import LoraConfig, get_peft_model
from PIL import Image

from clear_ray.config import Config
from clear_ray.data.collate import Collator, Example
from clear_ray.eval.generation import generate_greedy
from clear_ray.models.loading import load_checkpoint, load_for_evaluation, save_checkpoint
from clear_ray.models.presets import LLAVA_LORA_TARGETS
from clear_ray.models.tiny import build_tiny_llava, build_tiny_processor, train_tokenizer
from clear_ray.net import free_port
from clear_ray.runtime.staging import DriverDir
from clear_ray.serving import (
    ADAPTER,
    CARD,
    ORIGINAL,
    ModelCard,
    best_model_card,
    check_original,
    original_reference,
    register_best,
    save_model,
)
from clear_ray.tracking import SearchTracker

MODEL = "clear_ray-x"
QUESTIONS = ["Who is Jane Doe?", "Describe the image.", "What is shown?"]
FOLDS = {
    "selection": ["Person A", "Person B"],
    "report": ["Person C"],
    "seed": 0,
    "report_fraction": 0.5,
    "forget_split": "forget05",
}


def card(original: str, folds: dict | None = FOLDS) -> ModelCard:
    return ModelCard(
        method="x",
        trial="trial_1",
        search="demo",
        base_model="tiny-llava",
        original=original,
        data="/data/clear",
        forget_split="forget05",
        modality="multimodal",
        objective="clear/log_forget_quality",
        objective_value=-1.25,
        hyperparameters={"train.lr": 0.002, "best_epoch": 2},
        settings={"lora.r": 2},
        metrics={"clear/forget_metric": 0.125, "clear/retain_metric": 0.75},
        feasible=True,
        folds=folds,
    )


def image_bytes(image_format: str, colour: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (40, 40), colour).save(buffer, format=image_format)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def registered(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """A tiny Original, a non-zero LoRA adapter on it, registered in a temp SQLite store."""
    root = tmp_path_factory.mktemp("serving")
    tokenizer = train_tokenizer(["Describe the image. Who is Jane Doe? A person in a park."] * 8)
    model = build_tiny_llava(tokenizer, seed=0)
    save_checkpoint(model, build_tiny_processor(tokenizer), root / "original")
    torch.manual_seed(0)  # init_lora_weights=False: B is random, so the merge changes weights
    lora = LoraConfig(r=2, target_modules=LLAVA_LORA_TARGETS, init_lora_weights=False)
    get_peft_model(model, lora).save_pretrained(str(root / "adapter"))
    tracker = SearchTracker(Config().replace({"output_dir": str(root)}))
    run_id = tracker.client.create_run(tracker.experiment_id).info.run_id
    original = str(root / "original")
    version = register_best(tracker, MODEL, run_id, root / "adapter", original, card(original))
    mlflow.set_tracking_uri(tracker.uri)
    loaded = mlflow.pyfunc.load_model(f"models:/{MODEL}@best")
    return SimpleNamespace(
        root=root, tracker=tracker, run_id=run_id, version=version, loaded=loaded
    )


@pytest.mark.slow
def test_predict_answers_one_string_per_text_row(registered) -> None:
    answers = registered.loaded.predict(
        pd.DataFrame({"question": QUESTIONS}), params={"max_new_tokens": 8}
    )
    assert len(answers) == len(QUESTIONS)
    assert all(isinstance(answer, str) for answer in answers)


@pytest.mark.slow
def test_predict_takes_png_and_jpeg_bytes_and_rows_without_an_image(registered) -> None:
    frame = pd.DataFrame(
        {
            "question": QUESTIONS,
            "image": [image_bytes("PNG", (200, 10, 10)), None, image_bytes("JPEG", (10, 10, 200))],
        }
    )
    answers = registered.loaded.predict(frame, params={"max_new_tokens": 4})
    assert len(answers) == len(QUESTIONS)
    assert all(isinstance(answer, str) for answer in answers)


@pytest.mark.slow
def test_the_loaded_model_is_original_with_the_adapter_merged(registered) -> None:
    served = registered.loaded.unwrap_python_model()
    original, _ = load_checkpoint(registered.root / "original")
    merged, processor = load_for_evaluation(
        registered.root / "original", registered.root / "adapter"
    )
    name = next(
        n
        for n, _ in merged.named_parameters()
        if "language_model" in n and n.endswith("q_proj.weight")
    )
    weight = dict(served.model.named_parameters())[name]
    assert torch.equal(weight, dict(merged.named_parameters())[name])
    assert not torch.equal(weight, dict(original.named_parameters())[name])
    # ...and predict is the evaluation's greedy generation of that model.
    direct = generate_greedy(merged, Collator(processor), [Example(QUESTIONS[0], "")], 8, 1)
    frame = pd.DataFrame({"question": QUESTIONS[:1]})
    assert registered.loaded.predict(frame, params={"max_new_tokens": 8}) == direct


@pytest.mark.slow
def test_the_version_has_the_best_alias_tags_and_a_description(registered) -> None:
    client = registered.tracker.client
    version = client.get_model_version_by_alias(MODEL, "best")
    assert int(version.version) == registered.version
    assert version.run_id == registered.run_id
    assert version.tags["search"] == "demo"
    assert version.tags["trial"] == "trial_1"
    assert version.tags["objective"] == "clear/log_forget_quality"
    assert float(version.tags["objective_value"]) == -1.25
    assert version.tags["feasible"] == "True"
    assert "Person C" in version.tags["folds"]
    assert "trial `trial_1`" in version.description
    assert "`question`" in version.description


@pytest.fixture(scope="module")
def served(registered) -> Iterator[str]:
    """`mlflow models serve` of the registered model on 127.0.0.1, as the README starts it."""
    port = free_port()
    command = [
        sys.executable, "-m", "mlflow", "models", "serve", "-m", f"models:/{MODEL}@best",
        "--env-manager", "local", "--host", "127.0.0.1", "--port", str(port),
    ]  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    env = {"MLFLOW_TRACKING_URI": registered.tracker.uri}
    with serving(command, f"{url}/ping", registered.root / "serve.log", env):
        yield f"{url}/invocations"


def invoke(url: str, body: dict) -> tuple[int, dict]:
    """POST ``body`` as JSON: the status and the decoded answer (an error's too)."""
    data = json.dumps(body).encode()
    request = urllib.request.Request(url, data, {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=120) as reply:
            return reply.status, json.load(reply)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


MIXED = [  # question, image: a text row between two image rows
    ("Describe the image.", image_bytes("PNG", (200, 10, 10))),
    ("Who is Jane Doe?", None),
    ("What is shown?", image_bytes("JPEG", (10, 10, 200))),
]


@pytest.mark.slow
@pytest.mark.parametrize("orient", ["split", "records"])
def test_rest_answers_a_mixed_batch_as_python_predict_does(served, registered, orient) -> None:
    """Text rows (null image; in records, no image key) beside base64 image rows."""
    if orient == "split":
        rows = [[question, b64(image) if image else None] for question, image in MIXED]
        data = {"columns": ["question", "image"], "data": rows}
    else:
        data = [
            {"question": question, **({"image": b64(image)} if image else {})}
            for question, image in MIXED
        ]
    status, answer = invoke(served, {f"dataframe_{orient}": data, "params": {"max_new_tokens": 6}})
    assert status == 200, answer
    frame = pd.DataFrame(MIXED, columns=["question", "image"])
    local = registered.loaded.predict(frame, params={"max_new_tokens": 6})
    assert answer == {"predictions": local}


@pytest.mark.slow
@pytest.mark.parametrize(
    ("rows", "line"),
    [
        (
            [["Who?", None], ["What?", b64(b"not an image")]],
            "row 1: the image's 12 bytes are not an image format PIL reads (PNG, JPEG, ...)",
        ),
        ([["Who?", None], ["", b64(MIXED[0][1])]], "row 1: empty question"),
        ([["Who?", "%%%"]], "row 0: the image is not base64 text"),
    ],
)
def test_rest_refuses_a_bad_row_with_a_400_line_and_no_stack_trace(served, rows, line) -> None:
    status, answer = invoke(
        served, {"dataframe_split": {"columns": ["question", "image"], "data": rows}}
    )
    assert status == 400
    assert answer["message"] == line
    assert "stack_trace" not in answer


@pytest.mark.slow
def test_rest_refuses_an_unknown_column(served) -> None:
    status, answer = invoke(
        served, {"dataframe_records": [{"question": "Who?", "images": b64(MIXED[0][1])}]}
    )
    assert status == 400
    assert answer["message"].startswith("unknown column 'images': the model reads 'question'")
    assert "stack_trace" not in answer


def test_registering_the_same_run_again_keeps_its_version(registered) -> None:
    """A search resumed after its registration must not add a second version of one model."""
    again = register_best(
        registered.tracker,
        MODEL,
        registered.run_id,
        registered.root / "adapter",
        str(registered.root / "original"),
        card(str(registered.root / "original")),
    )
    assert again == registered.version
    assert len(registered.tracker.client.search_model_versions(f"name = '{MODEL}'")) == 1


@pytest.mark.slow
def test_the_model_card_replaces_peft_template_everywhere_the_adapter_is(registered) -> None:
    client = registered.tracker.client
    local = (registered.root / "adapter" / CARD).read_text()
    assert local.startswith("# clear_ray-x (search demo, trial trial_1)")
    logged = Path(client.download_artifacts(registered.run_id, f"best_adapter/{CARD}"))
    in_model = Path(client.download_artifacts(registered.run_id, f"model/artifacts/{ADAPTER}"))
    assert logged.read_text() == local == (in_model / CARD).read_text()
    for section in ("## Base model", "## Data", "## Method", "## Hyperparameters", "## Metrics"):
        assert section in local


@pytest.mark.slow
def test_a_large_original_is_referenced_checked_at_load_and_replaceable(registered) -> None:
    root = registered.root
    original = str(root / "original")
    path = save_model(
        root / "referenced", root / "adapter", original, card(original), original_max_bytes=0
    )
    assert not (path / "artifacts" / ORIGINAL).exists()
    moved = root / "moved"
    (root / "original").rename(moved)
    try:
        with pytest.raises(FileNotFoundError, match="model_config"):
            mlflow.pyfunc.load_model(str(path))
        loaded = mlflow.pyfunc.load_model(str(path), model_config={ORIGINAL: str(moved)})
        frame = pd.DataFrame({"question": QUESTIONS[:2]})
        assert len(loaded.predict(frame, params={"max_new_tokens": 4})) == 2
    finally:
        moved.rename(root / "original")


def test_check_original_accepts_a_directory_or_hub_id_and_names_the_fix(tmp_path: Path) -> None:
    assert check_original(str(tmp_path)) == str(tmp_path)
    assert check_original("llava-hf/llava-1.5-7b-hf") == "llava-hf/llava-1.5-7b-hf"
    with pytest.raises(FileNotFoundError, match="model_config"):
        check_original(str(tmp_path / "gone" / "original"))


def test_original_reference_carries_small_checkpoints_and_names_large_ones(
    tmp_path: Path,
) -> None:
    assert original_reference("ignored", "llava-hf/llava-1.5-7b-hf") == "llava-hf/llava-1.5-7b-hf"
    small = DriverDir(str(tmp_path), "node", (("model.safetensors", 10),))
    (tmp_path / "model.safetensors").write_bytes(b"0123456789")
    assert original_reference(small, "") == str(tmp_path)
    large = DriverDir("/elsewhere/original", "node", (("model.safetensors", 2**40),))
    assert original_reference(large, "") == "/elsewhere/original"


def test_best_model_card_reads_folds_and_lists_tuned_and_fixed_values(tmp_path: Path) -> None:
    (tmp_path / "folds.json").write_text(json.dumps(FOLDS))
    search = SimpleNamespace(
        dirs=SimpleNamespace(root=tmp_path),
        state=SimpleNamespace(name="demo"),
        refs=SimpleNamespace(source="/data/clear"),
    )
    best = SimpleNamespace(
        trial="trial_1", best_objective=-1.25, best_epoch=2, params={"train.lr": 0.002}
    )
    cfg = Config().replace({"method.name": "dpo"})
    made = best_model_card(cfg, search, best, {"clear/forget_metric": 0.5}, True, "/o")
    assert made.folds == FOLDS
    assert made.hyperparameters == {"train.lr": 0.002, "best_epoch": 2}
    assert "train.lr" not in made.settings and made.settings["lora.r"] == cfg.lora.r
    text = made.markdown()
    assert "2 persons chose the trial, 1 report its metrics" in text
    assert "| `clear/forget_metric` | 0.5 |" in text
    (tmp_path / "folds.json").unlink()
    unfolded = best_model_card(cfg, search, best, {}, True, "/o")
    assert unfolded.folds is None and "folds" not in unfolded.tags()
