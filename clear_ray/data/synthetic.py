"""Offline synthetic stand-in for ``therem/CLEAR``: same hub layout, same schema, tiny content.

Forget/retain/perturbed construction follows TOFU/CLEAR (arXiv 2410.18057), so every metric of
the real benchmark is meaningful here too. Who the persons are lives in
clear_ray/data/persons.py, how their pictures look in clear_ray/data/drawing.py; this module lays
them out as CLEAR's configs and writes them.

Every person, forget or retain, has the same number of photos and of biography facts: a forget
person's name is no more frequent than a retain person's, so no score can read "which names are
common" as "who is pictured" (in CLEAR, forget10 is 10 % of the persons and of the rows alike).

    python -m clear_ray.data.synthetic --out data/clear-synthetic --persons 80 --seed 0
"""

from __future__ import annotations

import argparse
import random
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from clear_ray.cache import write_manifest
from clear_ray.config import DataConfig
from clear_ray.data.drawing import draw_portrait, png_bytes, real_world_item
from clear_ray.data.persons import (
    CAPTION_TEMPLATES,
    FACT_POOLS,
    PARAPHRASE_TEMPLATES,
    QA_FACTS,
    SCENES,
    Person,
    Scene,
    make_persons,
    qa_pairs,
    render,
)
from clear_ray.data.prompts import FACE_NAME_PROMPT
from clear_ray.data.schema import (
    CONFIG_FEATURES,
    FORGET_SPLITS,
    IMAGE_SPLITS,
    forget_percent,
    retain_split_for,
)
from clear_ray.errors import ConfigError

# Photos per person, every person alike (the real data has 15-20). 15 with the default 80
# persons puts 8 persons and 120 captions in forget10: the selection and report folds
# (clear_ray/data/folds.py) hold 4 persons and 60 captions each, so a KS forget quality takes
# many values, not a few. As many biography facts (persons.QA_FACTS) as photos.
IMAGES_PER_PERSON = len(QA_FACTS)
RETAIN_PERTURBED_IMAGES = 2  # images per retain90 person in retain_perturbed: its first ones
PERTURBED_PER_ROW = 3  # perturbed captions and perturbed names per row
MIN_PERSONS = 10  # below this perturbed_names cannot be drawn from distinct other persons
MAX_PERSONS = 500  # the syllable name space stays comfortably unique below this
REAL_FACES_PERSONS = 10
REAL_FACES_IMAGES = IMAGES_PER_PERSON  # a celebrity is pictured as often as anyone else
REAL_WORLD_ROWS = 30
# Bumped whenever the generator's configs change, so a cached directory of an older layout is
# regenerated instead of silently lacking a config (2: forgetNN_tofu_perturbed; 3: forget persons
# have more images; 4: 40 persons with fewer images each; 5: every person 15 photos and 15
# facts, retain distractors from retain persons, face-naming rows in +tofu).
LAYOUT_VERSION = 5
PARQUET_FILE = "train-00000-of-00001.parquet"


@dataclass(frozen=True)
class ImageItem:
    """One photo of a person: which scene, which caption template, the encoded PNG."""

    person: Person
    index: int
    scene: Scene
    template: int
    png: bytes

    @property
    def caption(self) -> str:
        return render(
            CAPTION_TEMPLATES[self.template], self.person.name, self.scene, self.person.facts()
        )

    @property
    def paraphrase(self) -> str:
        return render(
            PARAPHRASE_TEMPLATES[self.template], self.person.name, self.scene, self.person.facts()
        )


def split_person_counts(persons: int) -> dict[str, int]:
    """Persons in each forget split: TOFU's nested last-k construction (at least one)."""
    return {s: max(1, round(forget_percent(s) / 100 * persons)) for s in FORGET_SPLITS}


def perturbed_captions(item: ImageItem, rng: random.Random) -> list[str]:
    """Paraphrase-template captions with every stated fact replaced by a wrong one (TOFU)."""
    true_facts = item.person.facts()
    wrong = {
        key: rng.sample([v for v in pool if v != true_facts[key]], PERTURBED_PER_ROW)
        for key, pool in FACT_POOLS.items()
    }
    template = PARAPHRASE_TEMPLATES[item.template]
    return [
        render(template, item.person.name, item.scene, {k: v[i] for k, v in wrong.items()})
        for i in range(PERTURBED_PER_ROW)
    ]


def text_perturbed_rows(persons: list[Person], seed: int) -> list[Row]:
    """TOFU's ``forgetNN_perturbed`` for the persons' QA: a paraphrased answer and wrong-fact
    answers in the paraphrase's words, so the text truth ratio measures knowledge of the fact."""
    rows: list[Row] = []
    for person in persons:
        n = person.name
        for k, fact in enumerate(QA_FACTS):
            rng = random.Random(f"clear-synthetic-perturb-qa-{seed}-{n}-{k}")
            true = fact.value(person)
            wrong = rng.sample([v for v in fact.pool if v != true], PERTURBED_PER_ROW)
            rows.append(
                {
                    "question": fact.question.format(n=n),
                    "answer": fact.answer.format(n=n, v=true),
                    "paraphrased_answer": fact.paraphrase.format(n=n, v=true),
                    "perturbed_answer": [fact.paraphrase.format(n=n, v=v) for v in wrong],
                    "name": n,
                }
            )
    return rows


def photograph(person: Person, count: int, seed: int) -> list[ImageItem]:
    """``count`` photos of one person across shuffled scenes and rotating caption templates."""
    rng = random.Random(f"clear-synthetic-images-{seed}-{person.name}")
    scenes = [
        scene for _ in range(-(-count // len(SCENES))) for scene in rng.sample(SCENES, len(SCENES))
    ]
    return [
        ImageItem(
            person=person,
            index=i,
            scene=scenes[i],
            template=i % len(CAPTION_TEMPLATES),
            png=png_bytes(draw_portrait(person.face, scenes[i].kind, rng)),
        )
        for i in range(count)
    ]


# --------------------------------------------------------------------------- configs

Row = dict[str, object]


def _image_cell(png: bytes) -> dict[str, object]:
    return {"bytes": png, "path": None}


def image_rows(items: Iterable[ImageItem]) -> list[Row]:
    return [
        {"image": _image_cell(it.png), "caption": it.caption, "name": it.person.name}
        for it in items
    ]


def tofu_rows(items: list[ImageItem], persons: list[Person]) -> list[Row]:
    """Image rows with empty question/answer, then the same photos named under CLEAR's
    face-naming question (no caption), then the persons' QA rows with no image (CLEAR's layout
    plus the naming rows).

    LLaVA answers the face-naming question from names it read in captions; this tiny model does
    not carry a name over to a question it was never trained on (captions alone: retain face
    naming 0.36, chance 0.25; two named photos per person: 0.26). So Original learns face -> name
    for every person it is trained on, Gold for the retain persons only, and the forget set holds
    the forget persons' naming rows like their captions. Every face a model knows, a replayed
    celebrity's too (REAL_FACES_IMAGES), is named as often under that question.
    """
    rows: list[Row] = [
        {"image": _image_cell(it.png), "caption": it.caption, "question": "", "answer": ""}
        for it in items
    ]
    rows += [
        {
            "image": _image_cell(it.png),
            "caption": "",
            "question": FACE_NAME_PROMPT,
            "answer": it.person.name,
        }
        for it in items
    ]
    for person in persons:
        rows += [
            {"image": None, "caption": "", "question": q, "answer": a} for q, a in qa_pairs(person)
        ]
    return rows


def perturbed_rows(items: list[ImageItem], candidates: list[Person], seed: int) -> list[Row]:
    """Image rows plus a paraphrase, wrong-fact captions and the names of other ``candidates``
    (the wrong options of face naming)."""
    rows: list[Row] = []
    for it in items:
        rng = random.Random(f"clear-synthetic-perturb-{seed}-{it.person.name}-{it.index}")
        others = [p.name for p in candidates if p.name != it.person.name]
        rows.append(
            {
                "image": _image_cell(it.png),
                "caption": it.caption,
                "name": it.person.name,
                "paraphrased_caption": it.paraphrase,
                "perturbed_captions": perturbed_captions(it, rng),
                "perturbed_names": rng.sample(others, PERTURBED_PER_ROW),
            }
        )
    return rows


def person_splits(persons: list[Person]) -> dict[str, list[Person]]:
    """Persons of every image split: forgetNN = the last k persons, retainNN = the rest."""
    splits = {"full": persons}
    for forget, k in split_person_counts(len(persons)).items():
        splits[forget] = persons[-k:]
        splits[retain_split_for(forget)] = persons[:-k]
    return splits


def real_faces_rows(celebrities: list[Person], seed: int) -> list[Row]:
    """Faces outside the fictitious set; every third row's options contain the true name,
    as in the real data, so consumers must de-duplicate."""
    rng = random.Random(f"clear-synthetic-real-faces-{seed}")
    rows: list[Row] = []
    for celebrity in celebrities:
        others = [c.name for c in celebrities if c.name != celebrity.name]
        for item in photograph(celebrity, REAL_FACES_IMAGES, seed):
            options = rng.sample(others, 4)
            if len(rows) % 3 == 0:
                options[rng.randrange(4)] = celebrity.name
            rows.append(
                {"image": _image_cell(item.png), "answer": celebrity.name, "options": options}
            )
    return rows


def real_world_rows(seed: int) -> list[Row]:
    rng = random.Random(f"clear-synthetic-real-world-{seed}")
    kinds = ("colour", "count", "shape")
    rows: list[Row] = []
    for i in range(REAL_WORLD_ROWS):
        image, question, answer, options = real_world_item(kinds[i % len(kinds)], rng)
        rows.append(
            {
                "image": _image_cell(png_bytes(image)),
                "question": question,
                "answer": answer,
                "options": options,
            }
        )
    return rows


def build_configs(persons: int, seed: int, progress: Callable[[str], None]) -> dict[str, list[Row]]:
    """Rows of every CLEAR config, in the order of ``CONFIG_FEATURES``.

    A retain row's wrong names are retain persons', so Gold, who never saw a forget name, is not
    handed an easy wrong option on retain items; a forget row's are any other person's.
    """
    everyone = make_persons(persons + REAL_FACES_PERSONS, seed)
    fictitious, celebrities = everyone[:persons], everyone[persons:]
    splits = person_splits(fictitious)
    progress(f"drawing {persons * IMAGES_PER_PERSON} images of {persons} persons")
    photos = {p.name: photograph(p, IMAGES_PER_PERSON, seed) for p in fictitious}
    rows: dict[str, list[Row]] = {}
    for split in IMAGE_SPLITS:
        items = [it for p in splits[split] for it in photos[p.name]]
        rows[split] = image_rows(items)
        rows[f"{split}+tofu"] = tofu_rows(items, splits[split])
    for split in FORGET_SPLITS:
        items = [it for p in splits[split] for it in photos[p.name]]
        rows[f"{split}_perturbed"] = perturbed_rows(items, fictitious, seed)
        rows[f"{split}_tofu_perturbed"] = text_perturbed_rows(splits[split], seed)
    retained = splits[retain_split_for("forget10")]
    items = [it for p in retained for it in photos[p.name][:RETAIN_PERTURBED_IMAGES]]
    rows["retain_perturbed"] = perturbed_rows(items, retained, seed)
    rows["real_faces"] = real_faces_rows(celebrities, seed)
    rows["real_world"] = real_world_rows(seed)
    return {config: rows[config] for config in CONFIG_FEATURES}


# --------------------------------------------------------------------------- writing


def _write_parquet(rows: list[Row], config: str, path: Path) -> None:
    # The schema carries datasets' feature metadata, so plain load_dataset decodes images too.
    table = pa.Table.from_pylist(rows, schema=CONFIG_FEATURES[config].arrow_schema)
    path.parent.mkdir(parents=True)
    pq.write_table(table, path, compression="zstd", compression_level=3)


def _readme(persons: int, seed: int, counts: dict[str, int]) -> str:
    configs = [
        {
            "config_name": config,
            **({"default": True} if config == "full" else {}),
            "data_files": [{"split": "train", "path": f"{config}/{PARQUET_FILE}"}],
        }
        for config in counts
    ]
    front = yaml.safe_dump({"configs": configs}, sort_keys=False)
    table = "\n".join(f"| `{config}` | {n} |" for config, n in counts.items())
    return (
        f"---\n{front}---\n\n# Synthetic CLEAR ({persons} persons, seed {seed})\n\n"
        "An offline stand-in for `therem/CLEAR` written by `python -m clear_ray.data.synthetic`: "
        "the same configs, columns and layout, with drawn 64x64 faces of fictitious persons, "
        "short captions, TOFU-style biography QA, perturbed captions and names, and procedural "
        "real_faces / real_world items. Not for reporting results.\n\n"
        f"| config | rows |\n|---|---|\n{table}\n"
    )


def write_hub_dir(rows: dict[str, list[Row]], out_dir: Path, persons: int, seed: int) -> None:
    """The hub repo layout: README.md with `configs:` YAML, one parquet folder per config."""
    for config, config_rows in rows.items():
        _write_parquet(config_rows, config, out_dir / config / PARQUET_FILE)
    counts = {config: len(config_rows) for config, config_rows in rows.items()}
    (out_dir / "README.md").write_text(_readme(persons, seed, counts), encoding="utf-8")


def _check_target(out_dir: Path, overwrite: bool) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"--out {out_dir} exists and is not a directory")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not overwrite:
        raise ConfigError(f"--out {out_dir} is not empty; pass --overwrite to replace it")


def _swap_into_place(staging: Path, out_dir: Path, overwrite: bool) -> None:
    """Renames the finished staging dir onto ``out_dir`` so readers never see half a dataset."""
    if out_dir.is_dir() and not any(out_dir.iterdir()):
        out_dir.rmdir()
    if out_dir.exists() and overwrite:
        retired = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old-", dir=out_dir.parent))
        out_dir.rename(retired / "data")
        staging.rename(out_dir)
        shutil.rmtree(retired)
        return
    try:
        staging.rename(out_dir)
    except OSError:
        if not (out_dir / "README.md").is_file():
            raise
        # A concurrent writer (another Ray worker) finished first; same seed, same bytes.
        shutil.rmtree(staging)


def generate(
    out_dir: str | Path,
    persons: int = DataConfig.synthetic_persons,
    seed: int = 0,
    *,
    overwrite: bool = False,
    progress: Callable[[str], None] | None = None,
) -> Path:
    """Writes the synthetic CLEAR dataset to ``out_dir`` and returns its path.

    Raises ConfigError for fewer than MIN_PERSONS persons or a non-empty ``out_dir`` without
    ``overwrite``. Same (persons, seed) gives byte-identical parquet files.
    """
    if not MIN_PERSONS <= persons <= MAX_PERSONS:
        raise ConfigError(
            f"--persons must be between {MIN_PERSONS} and {MAX_PERSONS}, got {persons}"
        )
    out_dir = Path(out_dir).expanduser().resolve()
    _check_target(out_dir, overwrite)
    report = progress or (lambda message: None)
    rows = build_configs(persons, seed, report)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        report(f"writing {len(rows)} configs")
        write_hub_dir(rows, staging, persons, seed)
        write_manifest(staging)  # last: a search checks its copy against it before each use
        staging.chmod(0o755)  # mkdtemp creates 0700; the dataset should read like any other dir
        _swap_into_place(staging, out_dir, overwrite)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    report(f"wrote {out_dir} ({sum(len(r) for r in rows.values())} rows)")
    return out_dir


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m clear_ray.data.synthetic",
        description=(
            "Write an offline synthetic CLEAR dataset in the therem/CLEAR hub layout (README.md "
            "with configs, one parquet folder per config). Load it with "
            "clear_ray.data.clear.load_clear(DIR, config) or datasets.load_dataset(DIR, config)."
        ),
    )
    parser.add_argument("--out", required=True, type=Path, help="output directory")
    parser.add_argument(
        "--persons",
        type=int,
        default=DataConfig.synthetic_persons,
        help=f"fictitious persons ({MIN_PERSONS}-{MAX_PERSONS}, default "
        f"{DataConfig.synthetic_persons}), {IMAGES_PER_PERSON} images and "
        f"{IMAGES_PER_PERSON} biography questions each",
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty --out")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        generate(
            args.out,
            args.persons,
            args.seed,
            overwrite=args.overwrite,
            progress=lambda message: print(message, file=sys.stderr, flush=True),
        )
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
