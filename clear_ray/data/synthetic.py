"""Offline synthetic stand-in for ``therem/CLEAR``: same hub layout, same schema, tiny content.

A ~300k-parameter LLaVA trained for a minute on two CPU cores must be able to memorise who is who,
so persons have few, stable, visible traits (a drawn face) and a small vocabulary of facts.
Forget/retain/perturbed construction follows TOFU/CLEAR (arXiv 2410.18057), so every metric of
the real benchmark is meaningful here too.

    python -m clear_ray.data.synthetic --out data/clear-synthetic --persons 40 --seed 0
"""

from __future__ import annotations

import argparse
import io
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
from PIL import Image, ImageDraw

from clear_ray.cache import write_manifest
from clear_ray.config import ConfigError
from clear_ray.data.schema import (
    CONFIG_FEATURES,
    FORGET_SPLITS,
    IMAGE_SPLITS,
    forget_percent,
    retain_split_for,
)

IMAGES_PER_PERSON = 4  # the real data has 15-20; 4 keeps a CPU epoch short with 40 persons
# Persons of the largest forget split get 15, so forget10's forget captions (4 of the default 40
# persons) are 60 items: the person folds of the selection/report split (clear_ray/data/folds.py)
# hold 2 persons and 30 items each, and the KS forget quality takes many values, not a few.
FORGET_IMAGES_PER_PERSON = 15
RETAIN_PERTURBED_IMAGES = 1  # images per retain90 person in retain_perturbed
PERTURBED_PER_ROW = 3  # perturbed captions and perturbed names per row
MIN_PERSONS = 10  # below this perturbed_names cannot be drawn from distinct other persons
MAX_PERSONS = 500  # the syllable name space stays comfortably unique below this
REAL_FACES_PERSONS = 10
REAL_FACES_IMAGES = 2
REAL_WORLD_ROWS = 30
IMAGE_SIZE = 64
# Bumped whenever the generator's configs change, so a cached directory of an older layout is
# regenerated instead of silently lacking a config (2: forgetNN_tofu_perturbed; 3: forget persons
# have FORGET_IMAGES_PER_PERSON images; 4: 40 persons with fewer images each).
LAYOUT_VERSION = 4
PARQUET_FILE = "train-00000-of-00001.parquet"

# Consonant-initial professions keep "a {profession}" grammatical without an a/an rule, so a
# perturbed caption differs from its paraphrase in the fact words only.
PROFESSIONS = (
    "baker", "teacher", "pilot", "nurse", "farmer", "painter", "doctor", "singer", "writer",
    "dentist", "lawyer", "chef", "plumber", "tailor", "sailor", "dancer", "banker", "potter",
)  # fmt: skip
CITIES = (
    "Paris", "Tokyo", "Lima", "Oslo", "Cairo", "Rome", "Dublin", "Madrid", "Vienna", "Boston",
    "Denver", "Sydney", "Toronto", "Berlin", "Prague", "Lisbon", "Athens", "Nairobi",
)  # fmt: skip
HOBBIES = (
    "chess", "painting", "cycling", "gardening", "fishing", "knitting", "swimming", "hiking",
    "dancing", "singing", "skating", "reading", "baking", "surfing", "running", "sailing",
    "pottery", "juggling",
)  # fmt: skip
PETS = (
    "cat", "dog", "parrot", "rabbit", "turtle", "hamster", "goldfish", "pony", "lizard",
    "ferret", "canary", "goat", "snake", "frog", "owl",
)  # fmt: skip
FIRST_SYLLABLES = (
    "ka", "lo", "mi", "ra", "to", "ve", "si", "no", "da", "ri", "ze", "lu", "ba", "fe", "go",
    "ti", "ma", "su", "ne", "pa",
)  # fmt: skip
LAST_ENDINGS = ("son", "ner", "ley", "ton", "vik", "dor", "lan", "mar")

SKIN_TONES = {
    "pale": (250, 225, 205), "light": (235, 195, 160), "tan": (205, 150, 105),
    "brown": (150, 100, 65), "dark": (95, 60, 40),
}  # fmt: skip
HAIR_COLOURS = {
    "black": (20, 20, 20), "brown": (110, 65, 30), "blond": (235, 200, 90),
    "red": (190, 60, 30), "grey": (160, 160, 160), "blue": (40, 90, 220),
}  # fmt: skip
EYE_COLOURS = {
    "brown": (100, 55, 20), "blue": (40, 110, 230), "green": (40, 160, 60), "grey": (120, 120, 130),
}  # fmt: skip
SHIRT_COLOURS = {
    "red": (200, 40, 40), "green": (40, 150, 60), "blue": (40, 70, 200), "yellow": (230, 200, 40),
    "purple": (130, 50, 160), "white": (245, 245, 245),
}  # fmt: skip
HAIR_STYLES = ("short", "long", "bun", "spiky")
FACE_SHAPES = ("round", "oval")

# Caption template i and paraphrase template i state the same facts in different words.
CAPTION_TEMPLATES = (
    "{name}, a {profession} from {city}, is {scene}.",
    "{name} is {scene}. {name} is a {profession} who loves {hobby}.",
    "{name} from {city} enjoys {hobby} and is {scene}.",
)
PARAPHRASE_TEMPLATES = (
    "Here {name} is {scene}; {name} works as a {profession} in {city}.",
    "This is {name}, a {profession} fond of {hobby}, {scene}.",
    "In this picture {name} is {scene}; {name} lives in {city} and likes {hobby}.",
)
FACT_POOLS = {"profession": PROFESSIONS, "city": CITIES, "hobby": HOBBIES}


@dataclass(frozen=True)
class Face:
    """Visible identity: every image of a person draws exactly these traits."""

    skin: str
    hair_colour: str
    hair_style: str
    eye_colour: str
    face_shape: str
    glasses: bool
    beard: bool
    shirt: str


@dataclass(frozen=True)
class Person:
    name: str
    profession: str
    city: str
    hobby: str
    pet: str
    face: Face

    def facts(self) -> dict[str, str]:
        return {"profession": self.profession, "city": self.city, "hobby": self.hobby}


@dataclass(frozen=True)
class Scene:
    kind: str
    phrase: str  # completes "{name} is ..."


SCENES = (
    Scene("beach", "standing on a sunny beach"),
    Scene("park", "walking in a green park"),
    Scene("office", "sitting in a quiet office"),
    Scene("street", "standing on a busy street"),
    Scene("kitchen", "cooking in a bright kitchen"),
    Scene("mountain", "resting near tall mountains"),
)


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


# --------------------------------------------------------------------------- persons


def _random_name(rng: random.Random) -> str:
    first = "".join(rng.choice(FIRST_SYLLABLES) for _ in range(2)).capitalize()
    last = "".join(rng.choice(FIRST_SYLLABLES) for _ in range(2)) + rng.choice(LAST_ENDINGS)
    return f"{first} {last.capitalize()}"


def _random_face(rng: random.Random) -> Face:
    return Face(
        skin=rng.choice(list(SKIN_TONES)),
        hair_colour=rng.choice(list(HAIR_COLOURS)),
        hair_style=rng.choice(HAIR_STYLES),
        eye_colour=rng.choice(list(EYE_COLOURS)),
        face_shape=rng.choice(FACE_SHAPES),
        glasses=rng.random() < 0.3,
        beard=rng.random() < 0.3,
        shirt=rng.choice(list(SHIRT_COLOURS)),
    )


def make_persons(count: int, seed: int) -> list[Person]:
    """``count`` persons with distinct names, first names and faces, fixed by ``seed``.

    Distinct first names and faces keep identities separable for a tiny model.
    """
    rng = random.Random(f"clear-synthetic-persons-{seed}")
    persons: list[Person] = []
    first_names: set[str] = set()
    faces: set[Face] = set()
    while len(persons) < count:
        name, face = _random_name(rng), _random_face(rng)
        if name.split()[0] in first_names or face in faces:
            continue
        first_names.add(name.split()[0])
        faces.add(face)
        persons.append(
            Person(
                name=name,
                profession=rng.choice(PROFESSIONS),
                city=rng.choice(CITIES),
                hobby=rng.choice(HOBBIES),
                pet=rng.choice(PETS),
                face=face,
            )
        )
    return persons


def split_person_counts(persons: int) -> dict[str, int]:
    """Persons in each forget split: TOFU's nested last-k construction (at least one)."""
    return {s: max(1, round(forget_percent(s) / 100 * persons)) for s in FORGET_SPLITS}


# --------------------------------------------------------------------------- text


def render(template: str, name: str, scene: Scene, facts: dict[str, str]) -> str:
    return template.format(name=name, scene=scene.phrase, **facts)


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


@dataclass(frozen=True)
class QaFact:
    """One biography question; the paraphrase states the same fact in other words (TOFU)."""

    question: str
    answer: str
    paraphrase: str
    pool: tuple[str, ...]  # values the fact can take, for wrong answers
    value: Callable[[Person], str]


# The answer templates are the QA rows' targets; each paraphrase differs from its wrong-fact
# perturbations in the fact word only, as TOFU's perturbed_answer does.
QA_FACTS = (
    QaFact("What does {n} do for a living?", "{n} works as a {v}.", "By trade, {n} is a {v}.",
           PROFESSIONS, lambda p: p.profession),
    QaFact("Which city does {n} live in?", "{n} lives in {v}.", "The home of {n} is {v}.",
           CITIES, lambda p: p.city),
    QaFact("What is {n}'s favourite hobby?", "{n} loves {v}.", "In free time {n} enjoys {v}.",
           HOBBIES, lambda p: p.hobby),
    QaFact("What pet does {n} have?", "{n} has a pet {v}.", "{n} keeps a pet {v} at home.",
           PETS, lambda p: p.pet),
    QaFact("What color is {n}'s hair?", "{n} has {v} hair.", "The hair of {n} is {v}.",
           tuple(HAIR_COLOURS), lambda p: p.face.hair_colour),
    QaFact("What color are {n}'s eyes?", "{n} has {v} eyes.", "The eyes of {n} are {v}.",
           tuple(EYE_COLOURS), lambda p: p.face.eye_colour),
)  # fmt: skip


def qa_pairs(person: Person) -> list[tuple[str, str]]:
    """TOFU-style biography questions; answers repeat the fact and name the person."""
    n = person.name
    return [(f.question.format(n=n), f.answer.format(n=n, v=f.value(person))) for f in QA_FACTS]


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


# --------------------------------------------------------------------------- drawing


def _jitter(rgb: tuple[int, int, int], rng: random.Random, amount: int = 12) -> tuple[int, ...]:
    return tuple(max(0, min(255, c + rng.randint(-amount, amount))) for c in rgb)


def _draw_scene(draw: ImageDraw.ImageDraw, kind: str, rng: random.Random) -> None:
    s = IMAGE_SIZE
    horizon = rng.randint(30, 40)
    if kind == "beach":
        draw.rectangle((0, 0, s, horizon), fill=_jitter((120, 190, 245), rng))
        draw.rectangle((0, horizon, s, s), fill=_jitter((235, 215, 150), rng))
        x = rng.randint(4, 20)
        draw.ellipse((x, 3, x + 9, 12), fill=(255, 220, 60))
    elif kind == "park":
        draw.rectangle((0, 0, s, horizon), fill=_jitter((170, 215, 245), rng))
        draw.rectangle((0, horizon, s, s), fill=_jitter((70, 160, 70), rng))
        x = rng.choice((3, 48))
        draw.rectangle((x + 5, horizon - 10, x + 8, horizon + 4), fill=(110, 70, 30))
        draw.ellipse((x, horizon - 22, x + 13, horizon - 8), fill=(30, 120, 40))
    elif kind == "office":
        draw.rectangle((0, 0, s, s), fill=_jitter((190, 190, 185), rng))
        x = rng.choice((3, 46))
        draw.rectangle((x, 6, x + 14, 20), fill=(150, 200, 240), outline=(90, 90, 90))
        draw.rectangle((0, s - 14, s, s), fill=_jitter((130, 90, 50), rng))
    elif kind == "street":
        draw.rectangle((0, 0, s, s), fill=_jitter((150, 170, 200), rng))
        for x in range(0, s, 16):
            top = rng.randint(5, 25)
            draw.rectangle((x, top, x + 13, horizon), fill=_jitter((120, 100, 90), rng, 25))
        draw.rectangle((0, horizon, s, s), fill=(70, 70, 75))
    elif kind == "kitchen":
        draw.rectangle((0, 0, s, s), fill=_jitter((245, 235, 200), rng))
        for y in range(0, horizon, 8):
            draw.line((0, y, s, y), fill=(215, 205, 175))
        draw.rectangle((0, s - 16, s, s), fill=_jitter((210, 210, 215), rng))
    else:  # mountain
        draw.rectangle((0, 0, s, s), fill=_jitter((160, 200, 240), rng))
        for x in (rng.randint(-10, 10), rng.randint(30, 45)):
            draw.polygon(
                [(x, horizon + 6), (x + 14, 6), (x + 28, horizon + 6)], fill=(110, 110, 120)
            )
            draw.polygon([(x + 10, 13), (x + 14, 6), (x + 18, 13)], fill=(250, 250, 250))
        draw.rectangle((0, horizon + 6, s, s), fill=_jitter((90, 140, 80), rng))


def _draw_person(draw: ImageDraw.ImageDraw, face: Face, cx: float, cy: float, k: float) -> None:
    """Draws a head-and-shoulders portrait; sizes scale with ``k`` (about 1)."""
    hw = (11 if face.face_shape == "round" else 9) * k  # half width of the head
    hh = (11 if face.face_shape == "round" else 13) * k  # half height
    skin, hair = SKIN_TONES[face.skin], HAIR_COLOURS[face.hair_colour]
    draw.ellipse(
        (cx - 20 * k, cy + hh + 1, cx + 20 * k, cy + hh + 40 * k), fill=SHIRT_COLOURS[face.shirt]
    )
    if face.hair_style == "long":
        draw.rectangle((cx - hw - 3 * k, cy - hh / 2, cx + hw + 3 * k, cy + hh + 5 * k), fill=hair)
    draw.rectangle((cx - 3 * k, cy + hh - 2, cx + 3 * k, cy + hh + 4 * k), fill=skin)
    draw.ellipse((cx - hw, cy - hh, cx + hw, cy + hh), fill=skin)
    top = (cx - hw - k, cy - hh - 2 * k, cx + hw + k, cy + hh / 2)
    if face.hair_style == "spiky":
        for i in range(4):
            x0 = cx - hw + i * hw / 2
            draw.polygon(
                [
                    (x0, cy - hh + 4 * k),
                    (x0 + hw / 4, cy - hh - 6 * k),
                    (x0 + hw / 2, cy - hh + 4 * k),
                ],
                fill=hair,
            )
    draw.chord(top, 180, 360, fill=hair)
    if face.hair_style == "bun":
        draw.ellipse((cx - 4 * k, cy - hh - 9 * k, cx + 4 * k, cy - hh + k), fill=hair)
    if face.beard:
        draw.chord((cx - hw, cy - hh / 3, cx + hw, cy + hh), 0, 180, fill=hair)
    eye_y, eye_dx = cy - hh * 0.15, hw * 0.45
    for ex in (cx - eye_dx, cx + eye_dx):
        draw.ellipse(
            (ex - 2.5 * k, eye_y - 2 * k, ex + 2.5 * k, eye_y + 2 * k), fill=(255, 255, 255)
        )
        draw.ellipse(
            (ex - 1.3 * k, eye_y - 1.3 * k, ex + 1.3 * k, eye_y + 1.3 * k),
            fill=EYE_COLOURS[face.eye_colour],
        )
        if face.glasses:
            draw.rectangle(
                (ex - 4 * k, eye_y - 3 * k, ex + 4 * k, eye_y + 3 * k), outline=(10, 10, 10)
            )
    if face.glasses:
        draw.line((cx - eye_dx + 4 * k, eye_y, cx + eye_dx - 4 * k, eye_y), fill=(10, 10, 10))
    mouth_y = cy + hh * 0.5
    draw.line((cx - 3 * k, mouth_y, cx + 3 * k, mouth_y), fill=(150, 40, 50), width=1)


def png_bytes(image: Image.Image) -> bytes:
    """PNG with fixed encoder settings and no metadata, so the same seed gives the same bytes."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=False, compress_level=6)
    return buffer.getvalue()


def draw_portrait(face: Face, scene_kind: str, rng: random.Random) -> Image.Image:
    """A person's face with slight jitter in position and scale on a scene background."""
    image = Image.new("RGB", (IMAGE_SIZE, IMAGE_SIZE))
    draw = ImageDraw.Draw(image)
    _draw_scene(draw, scene_kind, rng)
    cx = IMAGE_SIZE / 2 + rng.randint(-5, 5)
    cy = IMAGE_SIZE / 2 - 4 + rng.randint(-3, 3)
    _draw_person(draw, face, cx, cy, rng.uniform(0.9, 1.1))
    return image


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
    """Image rows with empty question/answer, then the persons' QA rows with no image (CLEAR)."""
    rows: list[Row] = [
        {"image": _image_cell(it.png), "caption": it.caption, "question": "", "answer": ""}
        for it in items
    ]
    for person in persons:
        rows += [
            {"image": None, "caption": "", "question": q, "answer": a} for q, a in qa_pairs(person)
        ]
    return rows


def perturbed_rows(items: list[ImageItem], everyone: list[Person], seed: int) -> list[Row]:
    """Image rows plus a paraphrase, wrong-fact captions and other persons' names."""
    rows: list[Row] = []
    for it in items:
        rng = random.Random(f"clear-synthetic-perturb-{seed}-{it.person.name}-{it.index}")
        others = [p.name for p in everyone if p.name != it.person.name]
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


def images_per_person(persons: list[Person], splits: dict[str, list[Person]]) -> dict[str, int]:
    """FORGET_IMAGES_PER_PERSON for the persons of the largest forget split, else the default."""
    largest = max(FORGET_SPLITS, key=forget_percent)
    forget = {p.name for p in splits[largest]}
    return {
        p.name: FORGET_IMAGES_PER_PERSON if p.name in forget else IMAGES_PER_PERSON for p in persons
    }


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


SHAPES = ("circle", "square", "triangle", "diamond")
SHAPE_COLOURS = {
    "red": (220, 30, 30), "blue": (30, 60, 220), "green": (30, 160, 50),
    "yellow": (240, 210, 20), "purple": (140, 40, 170), "orange": (245, 140, 20),
    "black": (15, 15, 15), "pink": (245, 130, 190),
}  # fmt: skip
NUMBER_WORDS = ("one", "two", "three", "four")
BACKGROUNDS = ((235, 235, 235), (200, 225, 245), (225, 240, 205), (245, 230, 210))


def _draw_shape(
    draw: ImageDraw.ImageDraw, shape: str, box: tuple[int, int, int, int], fill
) -> None:
    x0, y0, x1, y1 = box
    if shape == "circle":
        draw.ellipse(box, fill=fill)
    elif shape == "square":
        draw.rectangle(box, fill=fill)
    elif shape == "triangle":
        draw.polygon([(x0, y1), ((x0 + x1) / 2, y0), (x1, y1)], fill=fill)
    else:
        mx, my = (x0 + x1) / 2, (y0 + y1) / 2
        draw.polygon([(mx, y0), (x1, my), (mx, y1), (x0, my)], fill=fill)


def _real_world_item(kind: str, rng: random.Random) -> tuple[Image.Image, str, str, list[str]]:
    """One procedural VQA item: a colour, count or shape question about drawn shapes."""
    image = Image.new("RGB", (IMAGE_SIZE, IMAGE_SIZE), rng.choice(BACKGROUNDS))
    draw = ImageDraw.Draw(image)
    shape, colour = rng.choice(SHAPES), rng.choice(list(SHAPE_COLOURS))
    count = rng.randint(1, 4) if kind == "count" else 1
    cells = rng.sample([(x, y) for x in (4, 34) for y in (4, 34)], count)
    for x, y in cells:
        size = rng.randint(18, 26)
        _draw_shape(draw, shape, (x, y, x + size, y + size), SHAPE_COLOURS[colour])
    if kind == "colour":
        question, answer, pool = f"What color is the {shape}?", colour, list(SHAPE_COLOURS)
    elif kind == "count":
        question, answer, pool = (
            f"How many {shape}s are there?",
            NUMBER_WORDS[count - 1],
            list(NUMBER_WORDS),
        )
    else:
        question, answer, pool = "What shape is in the image?", shape, list(SHAPES)
    options = [answer, *rng.sample([o for o in pool if o != answer], 3)]
    rng.shuffle(options)
    return image, question, answer, options


def real_world_rows(seed: int) -> list[Row]:
    rng = random.Random(f"clear-synthetic-real-world-{seed}")
    kinds = ("colour", "count", "shape")
    rows: list[Row] = []
    for i in range(REAL_WORLD_ROWS):
        image, question, answer, options = _real_world_item(kinds[i % len(kinds)], rng)
        rows.append(
            {
                "image": _image_cell(png_bytes(image)),
                "question": question,
                "answer": answer,
                "options": options,
            }
        )
    return rows


# What an empty scene looks like, for captions of photos without a person (pretraining).
SCENE_DESCRIPTIONS = {
    "beach": "a sunny beach with sand under a blue sky",
    "park": "a green park with a tree",
    "office": "a quiet office with a window and a desk",
    "street": "a busy street with tall buildings",
    "kitchen": "a bright kitchen with tiled walls",
    "mountain": "tall mountains with snowy peaks",
}


def scene_captions(count: int, seed: int) -> list[tuple[Image.Image, str]]:
    """Captioned photos of scenes without persons, each with one coloured shape in front.

    General knowledge for the tiny preset's pretraining (clear_ray/pretrain.py): the scenes
    and shapes the CLEAR-format captions and real_world questions talk about, not who is who.
    """
    rng = random.Random(f"clear-synthetic-scenes-{seed}")
    items = []
    for i in range(count):
        kind = SCENES[i % len(SCENES)].kind
        image = Image.new("RGB", (IMAGE_SIZE, IMAGE_SIZE))
        draw = ImageDraw.Draw(image)
        _draw_scene(draw, kind, rng)
        shape, colour = rng.choice(SHAPES), rng.choice(list(SHAPE_COLOURS))
        x, y, size = rng.randint(12, 34), rng.randint(28, 40), rng.randint(14, 20)
        _draw_shape(draw, shape, (x, y, x + size, y + size), SHAPE_COLOURS[colour])
        caption = f"The photo shows {SCENE_DESCRIPTIONS[kind]}. The {shape} in front is {colour}."
        items.append((image, caption))
    return items


def build_configs(persons: int, seed: int, progress: Callable[[str], None]) -> dict[str, list[Row]]:
    """Rows of every CLEAR config, in the order of ``CONFIG_FEATURES``."""
    everyone = make_persons(persons + REAL_FACES_PERSONS, seed)
    fictitious, celebrities = everyone[:persons], everyone[persons:]
    splits = person_splits(fictitious)
    counts = images_per_person(fictitious, splits)
    progress(f"drawing {sum(counts.values())} images of {persons} persons")
    photos = {p.name: photograph(p, counts[p.name], seed) for p in fictitious}
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
    rows["retain_perturbed"] = perturbed_rows(items, fictitious, seed)
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
    persons: int = 20,
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
        default=20,
        help=f"fictitious persons ({MIN_PERSONS}-{MAX_PERSONS}, default 20), "
        f"{IMAGES_PER_PERSON} images each ({FORGET_IMAGES_PER_PERSON} for forget10's)",
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
