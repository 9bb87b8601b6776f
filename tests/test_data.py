"""The CLEAR data contract: synthetic generator, local loader, prompt pools."""

from __future__ import annotations

import difflib
import io
import re
import shutil
from collections import Counter
from pathlib import Path

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from PIL import Image

from clear_ray.cache import MANIFEST
from clear_ray.config import DataConfig
from clear_ray.data import drawing, synthetic
from clear_ray.data import persons as persons_module
from clear_ray.data.clear import (
    HUB_REDIRECTS,
    check_disjoint_persons,
    config_available,
    data_fingerprint,
    load_clear,
)
from clear_ray.data.collate import Example, row_example
from clear_ray.data.prompts import (
    CAPTION_QUESTIONS,
    FACE_NAME_PROMPT,
    caption_question,
    idk_response,
    idk_responses,
)
from clear_ray.data.schema import (
    CONFIG_FEATURES,
    FORGET_SPLITS,
    IMAGE_SPLITS,
    LOADABLE_CONFIGS,
    TEXT_PERTURBED_SPLITS,
    retain_split_for,
)
from clear_ray.errors import ConfigError

PERSONS = synthetic.MIN_PERSONS
SEED = 0


@pytest.fixture(scope="session")
def clear_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synthetic.generate(tmp_path_factory.mktemp("clear") / "data", PERSONS, SEED)


def parquet_path(root: Path, config: str) -> Path:
    return root / config / synthetic.PARQUET_FILE


def rows(root: Path, config: str) -> list[dict]:
    return pq.read_table(parquet_path(root, config)).to_pylist()


def persons() -> list[persons_module.Person]:
    return synthetic.make_persons(PERSONS + synthetic.REAL_FACES_PERSONS, SEED)[:PERSONS]


def words(text: str) -> list[str]:
    return re.findall(r"\w+", text)


def clone_with_table(source: Path, dest: Path, config: str, table: pa.Table) -> Path:
    """A hub-layout dir whose ``config`` parquet is replaced by ``table``."""
    shutil.copytree(source, dest)
    pq.write_table(table, parquet_path(dest, config))
    return dest


# --------------------------------------------------------------------------- schema


def test_schema_covers_every_clear_config() -> None:
    image_configs = {*IMAGE_SPLITS, *(f"{s}+tofu" for s in IMAGE_SPLITS)}
    perturbed = {f"{s}_perturbed" for s in FORGET_SPLITS} | {"retain_perturbed"}
    text = {f"{s}_tofu_perturbed" for s in FORGET_SPLITS}
    assert set(CONFIG_FEATURES) == image_configs | perturbed | text | {"real_faces", "real_world"}
    assert len(CONFIG_FEATURES) == 23


# The config names of therem/CLEAR's README (dataset card, 21 configs, `default` = `full`).
HUB_README_CONFIGS = (
    "default", "forget01", "forget01+tofu", "forget01_perturbed", "forget05", "forget05+tofu",
    "forget05_perturbed", "forget10", "forget10+tofu", "forget10_perturbed", "full", "full+tofu",
    "real_faces", "real_world", "retain90", "retain90+tofu", "retain95", "retain95+tofu",
    "retain99", "retain99+tofu", "retain_perturbed",
)  # fmt: skip


def test_every_config_of_the_hub_readme_is_loadable_and_default_is_full() -> None:
    assert set(HUB_README_CONFIGS) <= set(LOADABLE_CONFIGS)
    assert LOADABLE_CONFIGS["default"] == CONFIG_FEATURES["full"]


def test_text_perturbed_config_has_tofus_columns_plus_the_person() -> None:
    for config in TEXT_PERTURBED_SPLITS:
        features = CONFIG_FEATURES[config]
        assert list(features) == [
            "question", "answer", "paraphrased_answer", "perturbed_answer", "name",
        ]  # fmt: skip
        assert features["perturbed_answer"] == datasets.List(datasets.Value("string"))


def test_retain_split_is_the_complement_percentage() -> None:
    assert [retain_split_for(s) for s in FORGET_SPLITS] == ["retain99", "retain95", "retain90"]
    with pytest.raises(ConfigError, match="forget20"):
        retain_split_for("forget20")


# --------------------------------------------------------------------------- generator layout


@pytest.mark.parametrize("config", list(CONFIG_FEATURES))
def test_synthetic_parquet_has_exactly_the_contract_features(clear_dir: Path, config: str) -> None:
    schema = pq.read_schema(parquet_path(clear_dir, config))
    assert datasets.Features.from_arrow_schema(schema) == CONFIG_FEATURES[config]
    assert schema.names == list(CONFIG_FEATURES[config])


def test_readme_lists_every_config_with_full_as_default(clear_dir: Path) -> None:
    text = (clear_dir / "README.md").read_text()
    front = yaml.safe_load(text.split("---")[1])
    entries = {e["config_name"]: e for e in front["configs"]}
    assert list(entries) == list(CONFIG_FEATURES)
    assert [name for name, e in entries.items() if e.get("default")] == ["full"]
    assert entries["forget10+tofu"]["data_files"] == [
        {"split": "train", "path": f"forget10+tofu/{synthetic.PARQUET_FILE}"}
    ]
    written = sorted(p.name for p in clear_dir.iterdir())
    assert written == sorted([*CONFIG_FEATURES, "README.md", MANIFEST])


def test_every_person_has_as_many_images_and_biography_questions(clear_dir: Path) -> None:
    """A forget person's name is no more frequent than a retain person's (in captions or QA),
    so face naming cannot be won by preferring frequent names."""
    counts = Counter(row["name"] for row in rows(clear_dir, "full"))
    assert len(counts) == PERSONS
    assert set(counts.values()) == {synthetic.IMAGES_PER_PERSON}
    names = list(counts)
    qa = [row for row in rows(clear_dir, "full+tofu") if row["image"] is None]
    by_person = Counter(next(n for n in names if n in row["question"]) for row in qa)
    assert set(by_person) == set(names)
    assert set(by_person.values()) == {len(persons_module.QA_FACTS)}
    assert len(persons_module.QA_FACTS) == synthetic.IMAGES_PER_PERSON


def test_default_forget10_folds_hold_four_persons_and_60_captions_and_questions() -> None:
    """The KS forget quality needs many items per fold to take many values."""
    persons = synthetic.make_persons(DataConfig.synthetic_persons, SEED)
    forget = synthetic.person_splits(persons)["forget10"]
    assert len(forget) == 8  # two folds of 4 persons
    assert 4 * synthetic.IMAGES_PER_PERSON >= 60 and 4 * len(persons_module.QA_FACTS) >= 60


def test_scene_captions_describe_scene_and_shape_without_persons() -> None:
    scenes = drawing.scene_captions(12, SEED)
    assert len(scenes) == 12
    assert {image.size for image, _ in scenes} == {(drawing.IMAGE_SIZE, drawing.IMAGE_SIZE)}
    for _, caption in scenes:
        assert any(d in caption for d in drawing.SCENE_DESCRIPTIONS.values())
        assert any(f"The {shape} in front" in caption for shape in drawing.SHAPES)
    assert drawing.scene_captions(12, SEED)[3][1] == scenes[3][1]  # deterministic


@pytest.mark.parametrize("forget", FORGET_SPLITS)
def test_forget_and_retain_partition_full_by_person(clear_dir: Path, forget: str) -> None:
    full, forget_rows = rows(clear_dir, "full"), rows(clear_dir, forget)
    retain_rows = rows(clear_dir, retain_split_for(forget))
    forget_names = {r["name"] for r in forget_rows}
    assert forget_names.isdisjoint(r["name"] for r in retain_rows)
    assert len(forget_rows) + len(retain_rows) == len(full)
    assert Counter(r["caption"] for r in forget_rows + retain_rows) == Counter(
        r["caption"] for r in full
    )
    expected = max(1, round(int(forget[-2:]) / 100 * PERSONS))
    assert [p.name for p in persons()[-expected:]] == sorted(
        forget_names, key=[p.name for p in persons()].index
    )


def test_forget_splits_are_nested(clear_dir: Path) -> None:
    names = [{r["name"] for r in rows(clear_dir, s)} for s in FORGET_SPLITS]
    assert names[0] <= names[1] <= names[2]


@pytest.mark.parametrize("split", IMAGE_SPLITS)
def test_tofu_config_is_image_rows_then_naming_rows_then_qa_rows(
    clear_dir: Path, split: str
) -> None:
    image_rows, tofu = rows(clear_dir, split), rows(clear_dir, f"{split}+tofu")
    n_persons = len({r["name"] for r in image_rows})
    named = len(image_rows)
    assert len(tofu) == len(image_rows) + named + len(persons_module.QA_FACTS) * n_persons
    head, naming = tofu[: len(image_rows)], tofu[len(image_rows) : len(image_rows) + named]
    tail = tofu[len(image_rows) + named :]
    assert [r["caption"] for r in head] == [r["caption"] for r in image_rows]
    assert all(r["image"] is not None and r["question"] == r["answer"] == "" for r in head)
    assert all(r["image"] is None and r["caption"] == "" and r["question"] for r in tail)
    names = {r["name"] for r in image_rows}
    assert all(any(name in r["answer"] for name in names) for r in tail)
    # Every photo again, named under CLEAR's face-naming question.
    assert all(r["question"] == FACE_NAME_PROMPT and r["caption"] == "" for r in naming)
    assert [(r["image"]["bytes"], r["answer"]) for r in naming] == [
        (r["image"]["bytes"], r["name"]) for r in image_rows
    ]


def test_a_celebrity_is_pictured_as_often_as_a_fictitious_person(clear_dir: Path) -> None:
    counts = Counter(r["answer"] for r in rows(clear_dir, "real_faces"))
    assert set(counts.values()) == {synthetic.IMAGES_PER_PERSON}


def test_a_naming_row_trains_the_name_under_its_question() -> None:
    image = Image.new("RGB", (4, 4))
    row = {"image": image, "caption": "", "question": FACE_NAME_PROMPT, "answer": "Ann Lee"}
    assert row_example(row) == Example(FACE_NAME_PROMPT, "Ann Lee", image)
    caption = row_example({**row, "caption": "Ann Lee sits.", "question": "", "answer": ""})
    assert caption.target == "Ann Lee sits." and caption.question in CAPTION_QUESTIONS
    assert row_example({"image": None, "caption": "", "question": "Q?", "answer": "A."}) == (
        Example("Q?", "A.")
    )


@pytest.mark.parametrize("forget", FORGET_SPLITS)
def test_text_perturbed_holds_every_qa_of_the_forget_persons(clear_dir: Path, forget: str) -> None:
    text = rows(clear_dir, f"{forget}_tofu_perturbed")
    persons = {r["name"] for r in rows(clear_dir, forget)}
    qa = [row for row in rows(clear_dir, f"{forget}+tofu") if row["image"] is None]
    assert {r["name"] for r in text} == persons
    assert [(r["question"], r["answer"]) for r in text] == [
        (r["question"], r["answer"]) for r in qa
    ]


def test_text_perturbed_answers_differ_from_the_paraphrase_in_the_fact_only(
    clear_dir: Path,
) -> None:
    by_name = {p.name: p for p in persons()}
    for row in rows(clear_dir, "forget10_tofu_perturbed"):
        paraphrase, wrong = row["paraphrased_answer"], row["perturbed_answer"]
        assert paraphrase != row["answer"] and row["name"] in paraphrase
        assert len(set(wrong)) == synthetic.PERTURBED_PER_ROW and paraphrase not in wrong
        fact = next(
            f
            for f in persons_module.QA_FACTS
            if f.question.format(n=row["name"]) == row["question"]
        )
        true = fact.value(by_name[row["name"]])
        assert true in words(paraphrase) and true in words(row["answer"])
        for answer in wrong:
            changed = [w for w in difflib.ndiff(words(paraphrase), words(answer)) if w[0] in "+-"]
            assert changed[0] == f"- {true}" and len(changed) == 2
            assert changed[1][2:] in fact.pool


@pytest.mark.parametrize("forget", FORGET_SPLITS)
def test_forget_perturbed_holds_every_forget_image(clear_dir: Path, forget: str) -> None:
    perturbed, plain = rows(clear_dir, f"{forget}_perturbed"), rows(clear_dir, forget)
    assert [(r["image"], r["caption"], r["name"]) for r in perturbed] == [
        (r["image"], r["caption"], r["name"]) for r in plain
    ]


def test_retain_perturbed_is_two_images_of_each_retain90_person(clear_dir: Path) -> None:
    perturbed, retain = rows(clear_dir, "retain_perturbed"), rows(clear_dir, "retain90")
    counts = Counter(r["name"] for r in perturbed)
    assert set(counts) == {r["name"] for r in retain}
    assert set(counts.values()) == {synthetic.RETAIN_PERTURBED_IMAGES}
    retain_images = {r["image"]["bytes"] for r in retain}
    assert all(r["image"]["bytes"] in retain_images for r in perturbed)


def test_perturbed_captions_differ_from_paraphrase_only_in_facts(clear_dir: Path) -> None:
    facts = {p.name: set(p.facts().values()) for p in persons()}
    fact_words = {w for pool in persons_module.FACT_POOLS.values() for w in pool}
    for row in rows(clear_dir, "forget10_perturbed") + rows(clear_dir, "retain_perturbed"):
        paraphrase = words(row["paraphrased_caption"])
        assert row["paraphrased_caption"] != row["caption"]
        assert len(set(row["perturbed_captions"])) == synthetic.PERTURBED_PER_ROW
        for perturbed in row["perturbed_captions"]:
            diff = difflib.SequenceMatcher(a=paraphrase, b=words(perturbed), autojunk=False)
            changes = [op for op in diff.get_opcodes() if op[0] != "equal"]
            assert changes and all(op[0] == "replace" for op in changes)
            for _, a0, a1, b0, b1 in changes:
                assert set(paraphrase[a0:a1]) <= facts[row["name"]]
                assert set(words(perturbed)[b0:b1]) <= fact_words - facts[row["name"]]


def test_paraphrase_states_the_same_facts_as_the_caption(clear_dir: Path) -> None:
    facts = {p.name: set(p.facts().values()) for p in persons()}
    for row in rows(clear_dir, "retain_perturbed"):
        true_facts = facts[row["name"]]
        caption_facts = set(words(row["caption"])) & true_facts
        assert (
            caption_facts and caption_facts == set(words(row["paraphrased_caption"])) & true_facts
        )
        assert row["name"] in row["paraphrased_caption"]


def test_perturbed_names_are_other_fictitious_persons_and_retain_rows_offer_retain_names(
    clear_dir: Path,
) -> None:
    names = {p.name for p in persons()}
    retained = {row["name"] for row in rows(clear_dir, "retain90")}
    for config, offered in (("forget10_perturbed", names), ("retain_perturbed", retained)):
        for row in rows(clear_dir, config):
            assert len(set(row["perturbed_names"])) == synthetic.PERTURBED_PER_ROW
            assert row["name"] not in row["perturbed_names"]
            assert set(row["perturbed_names"]) <= offered, config


def test_real_faces_are_other_persons_and_options_sometimes_hold_the_answer(
    clear_dir: Path,
) -> None:
    real = rows(clear_dir, "real_faces")
    assert len(real) == synthetic.REAL_FACES_PERSONS * synthetic.REAL_FACES_IMAGES
    assert {r["answer"] for r in real}.isdisjoint(p.name for p in persons())
    holds_answer = [r["answer"] in r["options"] for r in real]
    assert any(holds_answer) and not all(holds_answer)
    assert all(len(set(r["options"])) == 4 for r in real)


def test_real_world_options_are_four_distinct_including_the_answer(clear_dir: Path) -> None:
    real = rows(clear_dir, "real_world")
    assert len(real) == synthetic.REAL_WORLD_ROWS
    assert all(r["answer"] in r["options"] and len(set(r["options"])) == 4 for r in real)
    assert len({r["question"] for r in real}) > 3


def test_captions_are_short_and_name_the_person(clear_dir: Path) -> None:
    for row in rows(clear_dir, "full"):
        assert row["name"] in row["caption"]
        assert len(row["caption"].split()) <= 20


# --------------------------------------------------------------------------- identity


def test_persons_are_stable_per_seed_with_distinct_names_and_faces() -> None:
    first, again = synthetic.make_persons(12, 3), synthetic.make_persons(12, 3)
    assert first == again
    assert len({p.name for p in first}) == len({p.face for p in first}) == 12
    assert first != synthetic.make_persons(12, 4)


def test_every_image_shows_its_persons_face_colours(clear_dir: Path) -> None:
    by_name = {p.name: p.face for p in persons()}
    for row in rows(clear_dir, "full"):
        face = by_name[row["name"]]
        image = Image.open(io.BytesIO(row["image"]["bytes"]))
        assert image.size == (drawing.IMAGE_SIZE, drawing.IMAGE_SIZE)
        colours = {rgb for _, rgb in image.getcolors(drawing.IMAGE_SIZE**2)}
        assert persons_module.SKIN_TONES[face.skin] in colours
        assert persons_module.HAIR_COLOURS[face.hair_colour] in colours
        assert persons_module.EYE_COLOURS[face.eye_colour] in colours
        assert persons_module.SHIRT_COLOURS[face.shirt] in colours


def test_images_of_a_person_vary_in_scene(clear_dir: Path) -> None:
    full = rows(clear_dir, "full")
    first = [r for r in full if r["name"] == full[0]["name"]]  # a retain person
    assert len({r["image"]["bytes"] for r in first}) == synthetic.IMAGES_PER_PERSON
    scenes = {
        s.phrase for s in persons_module.SCENES if any(s.phrase in r["caption"] for r in first)
    }
    assert len(scenes) >= 4


# --------------------------------------------------------------------------- determinism


def parquet_bytes(root: Path) -> dict[str, bytes]:
    return {c: parquet_path(root, c).read_bytes() for c in CONFIG_FEATURES}


def test_same_seed_gives_byte_identical_files(clear_dir: Path, tmp_path: Path) -> None:
    again = synthetic.generate(tmp_path / "again", PERSONS, SEED)
    assert parquet_bytes(again) == parquet_bytes(clear_dir)
    assert (again / "README.md").read_text() == (clear_dir / "README.md").read_text()


def test_different_seed_gives_different_data(clear_dir: Path, tmp_path: Path) -> None:
    other = synthetic.generate(tmp_path / "other", PERSONS, SEED + 1)
    assert parquet_bytes(other)["full"] != parquet_bytes(clear_dir)["full"]
    assert {r["name"] for r in rows(other, "full")} != {r["name"] for r in rows(clear_dir, "full")}


# --------------------------------------------------------------------------- CLI


def test_cli_rejects_too_few_persons_with_exit_2(tmp_path: Path, capsys) -> None:
    assert synthetic.main(["--out", str(tmp_path / "d"), "--persons", "5"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--persons" in err
    assert not (tmp_path / "d").exists()


def test_cli_refuses_non_empty_out_unless_overwrite(tmp_path: Path, capsys) -> None:
    out = tmp_path / "d"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    assert synthetic.main(["--out", str(out), "--persons", "10"]) == 2
    assert "--overwrite" in capsys.readouterr().err and (out / "keep.txt").exists()
    assert synthetic.main(["--out", str(out), "--persons", "10", "--overwrite"]) == 0
    assert not (out / "keep.txt").exists() and (out / "README.md").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["d"]  # no staging leftovers


# --------------------------------------------------------------------------- load_clear


@pytest.mark.parametrize("config", list(CONFIG_FEATURES))
def test_load_clear_reads_every_config_with_contract_features(clear_dir: Path, config: str) -> None:
    dataset = load_clear(str(clear_dir), config)
    assert dataset.features == CONFIG_FEATURES[config]
    assert len(dataset) == len(rows(clear_dir, config))
    if "image" in dataset.features:
        assert isinstance(dataset[0]["image"], Image.Image)


@pytest.mark.parametrize("config", list(CONFIG_FEATURES))
def test_datasets_load_dataset_reads_every_config(
    clear_dir: Path, config: str, tmp_path: Path
) -> None:
    dataset = datasets.load_dataset(str(clear_dir), config, split="train", cache_dir=str(tmp_path))
    assert dataset.features == CONFIG_FEATURES[config]
    assert len(dataset) == len(rows(clear_dir, config))


def assert_one_line_error(source: Path | str, config: str, *needles: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_clear(str(source), config)
    message = str(caught.value)
    assert "\n" not in message
    for needle in needles:
        assert needle in message


def test_load_clear_rejects_unknown_config(clear_dir: Path) -> None:
    assert_one_line_error(clear_dir, "forget20", "'forget20'")


def test_load_clear_rejects_config_missing_from_readme(clear_dir: Path, tmp_path: Path) -> None:
    broken = shutil.copytree(clear_dir, tmp_path / "broken")
    readme = (
        (broken / "README.md").read_text().replace("config_name: forget05\n", "config_name: x\n")
    )
    (broken / "README.md").write_text(readme)
    assert_one_line_error(broken, "forget05", "'forget05'", "README.md")


def test_load_clear_rejects_missing_column(clear_dir: Path, tmp_path: Path) -> None:
    table = pq.read_table(parquet_path(clear_dir, "forget10_perturbed")).drop_columns(
        ["perturbed_names"]
    )
    broken = clone_with_table(clear_dir, tmp_path / "broken", "forget10_perturbed", table)
    assert_one_line_error(broken, "forget10_perturbed", "'forget10_perturbed'", "'perturbed_names'")


def test_load_clear_rejects_unreadable_image(clear_dir: Path, tmp_path: Path) -> None:
    table = pq.read_table(parquet_path(clear_dir, "forget10"))
    cells = table.column("image").to_pylist()
    png = bytearray(cells[3]["bytes"])
    png[len(png) // 2 : len(png) // 2 + 8] = b"\x00garbage"
    cells[3] = {"bytes": bytes(png), "path": None}
    table = table.set_column(0, "image", pa.array(cells, type=table.schema.field("image").type))
    broken = clone_with_table(clear_dir, tmp_path / "broken", "forget10", table)
    assert_one_line_error(broken, "forget10", "'forget10'", "row 3", "image")


def test_load_clear_rejects_missing_local_directory(tmp_path: Path) -> None:
    assert_one_line_error(tmp_path / "absent", "full", "absent")


def test_default_reads_full_where_the_directory_does_not_list_it(clear_dir: Path) -> None:
    default = load_clear(str(clear_dir), "default")
    assert default.features == CONFIG_FEATURES["full"]
    assert default["caption"] == load_clear(str(clear_dir), "full")["caption"]


def test_text_perturbed_reads_from_a_local_directory(clear_dir: Path) -> None:
    dataset = load_clear(str(clear_dir), "forget05_tofu_perturbed")
    assert dataset.features == CONFIG_FEATURES["forget05_tofu_perturbed"]
    n_persons = len({r["name"] for r in rows(clear_dir, "forget05")})
    assert len(dataset) == len(persons_module.QA_FACTS) * n_persons


def without_config(source: Path, dest: Path, config: str) -> Path:
    """A copy of a hub-layout dir whose README no longer lists ``config``."""
    shutil.copytree(source, dest)
    readme = dest / "README.md"
    front, body = readme.read_text().split("---\n")[1:3]
    entries = [e for e in yaml.safe_load(front)["configs"] if e["config_name"] != config]
    readme.write_text(f"---\n{yaml.safe_dump({'configs': entries})}---\n{body}")
    return dest


def test_config_availability_follows_the_readme_and_the_clear_hub_id(
    clear_dir: Path, tmp_path: Path
) -> None:
    assert config_available(str(clear_dir), "forget10_tofu_perturbed")
    assert config_available(str(clear_dir), "default")
    old = without_config(clear_dir, tmp_path / "old", "forget10_tofu_perturbed")
    assert not config_available(str(old), "forget10_tofu_perturbed")
    assert config_available("therem/CLEAR", "forget10_tofu_perturbed")
    assert not config_available("someone/clear-mirror", "forget10_tofu_perturbed")
    assert config_available("someone/clear-mirror", "forget10_perturbed")
    assert_one_line_error(old, "forget10_tofu_perturbed", "'forget10_tofu_perturbed'")


class HubCalls:
    """Stands in for ``datasets.load_dataset``: records each request, answers from local rows."""

    def __init__(self, root: Path) -> None:
        self.root, self.calls = root, []

    def __call__(self, repo: str, config: str, *, split: str, revision: str | None):
        self.calls.append((repo, config, revision))
        if repo == "locuslab/TOFU":  # TOFU's columns: no name, one extra
            table = pq.read_table(parquet_path(self.root, config.replace("_", "_tofu_", 1)))
            table = table.drop_columns(["name"])
            table = table.append_column("paraphrased_question", table.column("question"))
            return datasets.Dataset(datasets.table.InMemoryTable(table))
        return datasets.Dataset(
            datasets.table.InMemoryTable(pq.read_table(parquet_path(self.root, config)))
        )


def test_clear_hub_text_perturbed_is_read_from_tofus_forget_perturbed(
    clear_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hub = HubCalls(clear_dir)
    monkeypatch.setattr(datasets, "load_dataset", hub)
    dataset = load_clear("therem/CLEAR", "forget10_tofu_perturbed", revision="0" * 40)
    assert ("locuslab/TOFU", "forget10_perturbed", None) in hub.calls
    assert not [c for c in hub.calls if c[1] == "forget10_tofu_perturbed"]
    assert dataset.features == CONFIG_FEATURES["forget10_tofu_perturbed"]
    assert set(dataset["name"]) == {""}
    expected = rows(clear_dir, "forget10_tofu_perturbed")
    assert dataset["perturbed_answer"] == [r["perturbed_answer"] for r in expected]
    assert {c[:2] for c in hub.calls} >= {("therem/CLEAR", "retain_perturbed")}  # the guard
    assert HUB_REDIRECTS["forget01_tofu_perturbed"].config == "forget01_perturbed"


def test_other_hub_ids_are_asked_for_the_config_itself(
    clear_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hub = HubCalls(clear_dir)
    monkeypatch.setattr(datasets, "load_dataset", hub)
    load_clear("someone/clear-mirror", "forget05_tofu_perturbed")
    assert ("someone/clear-mirror", "forget05_tofu_perturbed", None) in hub.calls
    assert not [c for c in hub.calls if c[0] == "locuslab/TOFU"]


def leaked(clear_dir: Path, dest: Path, config: str) -> tuple[Path, str]:
    """A copy where one row of ``config`` (a retain config) shows a forget10 person."""
    intruder = rows(clear_dir, "forget10")[0]["name"]
    table = pq.read_table(parquet_path(clear_dir, config))
    names = table.column("name").to_pylist()
    names[1] = intruder
    table = table.set_column(table.schema.get_field_index("name"), "name", pa.array(names))
    return clone_with_table(clear_dir, dest, config, table), intruder


@pytest.mark.parametrize("leak_into", ["retain90", "retain_perturbed"])
@pytest.mark.parametrize("load", ["forget10+tofu", "retain90+tofu", "forget10_perturbed"])
def test_loader_refuses_forget_and_retain_sharing_a_person(
    clear_dir: Path, tmp_path: Path, leak_into: str, load: str
) -> None:
    broken, intruder = leaked(clear_dir, tmp_path / "leak", leak_into)
    assert_one_line_error(broken, load, repr(intruder), leak_into, "disjoint")
    load_clear(str(broken), "real_faces")  # configs outside the partition still load


def test_person_guard_on_the_hub_compares_the_small_configs(
    clear_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken, intruder = leaked(clear_dir, tmp_path / "leak", "retain_perturbed")
    hub = HubCalls(broken)
    monkeypatch.setattr(datasets, "load_dataset", hub)
    with pytest.raises(ConfigError, match=re.escape(repr(intruder))):
        check_disjoint_persons("someone/leaky", "forget10", revision="1" * 40)
    assert {c[1] for c in hub.calls} == {"forget10", "forget10_perturbed", "retain_perturbed"}


def test_evaluate_cli_prints_the_overlap_in_one_line_and_exits_2(
    clear_dir: Path, tmp_path: Path, capsys
) -> None:
    from clear_ray import evaluate

    broken, intruder = leaked(clear_dir, tmp_path / "leak", "retain_perturbed")
    checkpoint = tmp_path / "ckpt"
    checkpoint.mkdir()
    (checkpoint / "config.json").write_text("{}")
    argv = [str(checkpoint), "--data", str(broken), "--tasks", "retain_captions"]
    assert evaluate.main(argv) == 2
    (error,) = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert error.startswith("error: ") and repr(intruder) in error


# --------------------------------------------------------------------------- fingerprint


def test_fingerprint_follows_file_bytes_not_config_order(clear_dir: Path, tmp_path: Path) -> None:
    key = data_fingerprint(str(clear_dir), ["forget10", "retain90"])
    assert key == data_fingerprint(str(clear_dir), ["retain90", "forget10"])
    assert key != data_fingerprint(str(clear_dir), ["forget05", "retain95"])
    table = pq.read_table(parquet_path(clear_dir, "forget10")).slice(1)
    changed = clone_with_table(clear_dir, tmp_path / "changed", "forget10", table)
    assert data_fingerprint(str(changed), ["forget10", "retain90"]) != key
    assert data_fingerprint(str(changed), ["retain90"]) == data_fingerprint(
        str(clear_dir), ["retain90"]
    )


def test_fingerprint_of_hub_id_depends_on_revision() -> None:
    first = data_fingerprint("therem/CLEAR", ["full"], revision="0" * 40)
    assert first != data_fingerprint("therem/CLEAR", ["full"], revision="1" * 40)


# --------------------------------------------------------------------------- prompts


def test_caption_questions_are_clears_nine_and_none_asks_who_is_shown() -> None:
    assert CAPTION_QUESTIONS[0] == "What can you see in this picture?"
    assert "Tell me about the content of this image" in CAPTION_QUESTIONS  # no period, as CLEAR
    assert len(set(CAPTION_QUESTIONS)) == 9
    for question in CAPTION_QUESTIONS:
        assert not {"who", "person", "name", "people"} & set(words(question.lower())), question


def test_caption_question_is_a_stable_choice_from_nine() -> None:
    assert len(set(CAPTION_QUESTIONS)) == 9
    picks = [caption_question(f"item-{i}") for i in range(200)]
    assert picks == [caption_question(f"item-{i}") for i in range(200)]
    assert set(picks) == set(CAPTION_QUESTIONS)


def test_idk_pool_has_about_a_hundred_distinct_phrasings() -> None:
    pool = idk_responses()
    assert 90 <= len(pool) == len(set(pool))
    assert idk_response("forget-7") == idk_response("forget-7") and idk_response("x") in pool


def test_face_prompt_is_clears_with_its_trailing_space() -> None:
    assert FACE_NAME_PROMPT == "The name of the person on the image is "
