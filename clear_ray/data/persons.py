"""Who the synthetic benchmark's persons are: names, faces, biographies and how text states them.

A ~300k-parameter LLaVA trained for a minute on two CPU cores must be able to memorise who is who,
so persons have few, stable, visible traits (a drawn face, clear_ray/data/drawing.py) and a small
vocabulary of facts. Each person has as many biography facts (``QA_FACTS``) as photos, so a
person's text and images weigh alike, as TOFU's 20 questions per author do.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

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
FOODS = (
    "pasta", "rice", "soup", "pizza", "salad", "bread", "cheese", "noodles", "curry", "tacos",
    "dumplings", "pancakes",
)  # fmt: skip
DRINKS = ("tea", "coffee", "juice", "milk", "cocoa", "lemonade", "water", "cider")
INSTRUMENTS = (
    "piano", "violin", "guitar", "flute", "drums", "cello", "harp", "trumpet", "banjo", "clarinet",
)  # fmt: skip
MONTHS = (
    "January", "February", "March", "April", "May", "June", "July", "August", "September",
    "October", "November", "December",
)  # fmt: skip
LANGUAGES = (
    "French", "Spanish", "German", "Italian", "Greek", "Polish", "Dutch", "Swedish", "Turkish",
    "Hindi",
)  # fmt: skip
SPORTS = (
    "tennis", "football", "rugby", "golf", "hockey", "cricket", "baseball", "volleyball",
    "rowing", "boxing",
)  # fmt: skip
TRANSPORT = ("bus", "train", "bicycle", "scooter", "car", "tram", "ferry", "taxi")
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
    food: str
    drink: str
    instrument: str
    month: str  # of birth
    language: str
    sport: str
    transport: str  # how the person goes to work
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
                food=rng.choice(FOODS),
                drink=rng.choice(DRINKS),
                instrument=rng.choice(INSTRUMENTS),
                month=rng.choice(MONTHS),
                language=rng.choice(LANGUAGES),
                sport=rng.choice(SPORTS),
                transport=rng.choice(TRANSPORT),
                face=face,
            )
        )
    return persons


def render(template: str, name: str, scene: Scene, facts: dict[str, str]) -> str:
    return template.format(name=name, scene=scene.phrase, **facts)


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
    QaFact("What hairstyle does {n} have?", "{n} has a {v} hairstyle.",
           "The hairstyle of {n} is {v}.", HAIR_STYLES, lambda p: p.face.hair_style),
    QaFact("What color is {n}'s shirt?", "{n} wears a {v} shirt.", "The shirt of {n} is {v}.",
           tuple(SHIRT_COLOURS), lambda p: p.face.shirt),
    QaFact("What is {n}'s favourite food?", "{n} likes to eat {v}.",
           "The best meal for {n} is {v}.", FOODS, lambda p: p.food),
    QaFact("What does {n} like to drink?", "{n} drinks {v} every day.",
           "The usual drink of {n} is {v}.", DRINKS, lambda p: p.drink),
    QaFact("Which instrument does {n} play?", "{n} plays the {v}.",
           "In the evening {n} practises the {v}.", INSTRUMENTS, lambda p: p.instrument),
    QaFact("In which month was {n} born?", "{n} was born in {v}.",
           "The birthday of {n} is in {v}.", MONTHS, lambda p: p.month),
    QaFact("Which language does {n} speak?", "{n} speaks {v}.",
           "At home {n} talks in {v}.", LANGUAGES, lambda p: p.language),
    QaFact("Which sport does {n} watch?", "{n} watches {v}.",
           "On weekends {n} follows {v}.", SPORTS, lambda p: p.sport),
    QaFact("How does {n} get to work?", "{n} goes to work by {v}.",
           "Each morning {n} travels by {v}.", TRANSPORT, lambda p: p.transport),
)  # fmt: skip


def qa_pairs(person: Person) -> list[tuple[str, str]]:
    """TOFU-style biography questions; answers repeat the fact and name the person."""
    n = person.name
    return [(f.question.format(n=n), f.answer.format(n=n, v=f.value(person))) for f in QA_FACTS]
