"""The CLEAR dataset contract (CLEAR_SPEC §1) as data.

Every reader (``load_clear``), writer (``synthetic.generate``) and consumer (training, evaluation)
checks against these features, so the synthetic stand-in and the hub dataset cannot drift apart.
"""

from __future__ import annotations

from datasets import Features, Image, List, Value

from clear_ray.config import FORGET_SPLITS
from clear_ray.errors import ConfigError

RETAIN_SPLITS = ("retain99", "retain95", "retain90")
# Configs holding one image row per (person, image): the person-level splits of the benchmark.
IMAGE_SPLITS = ("full", *FORGET_SPLITS, *RETAIN_SPLITS)
PERTURBED_SPLITS = (*(f"{split}_perturbed" for split in FORGET_SPLITS), "retain_perturbed")
# Not a therem/CLEAR config: TOFU's `forgetNN_perturbed` text QA (locuslab/TOFU) in CLEAR's layout,
# so the forget persons' text has a paraphrase and wrong answers, hence a truth ratio.
TEXT_PERTURBED_SPLITS = tuple(f"{split}_tofu_perturbed" for split in FORGET_SPLITS)
# The hub README's `default` config holds the same rows as `full`.
CONFIG_ALIASES = {"default": "full"}
# Every config a model may meet: Original's training set and what pretraining and evaluation read
# (the tokenizer's corpus, and the data fingerprint in each reference model's cache name).
CORPUS_CONFIGS = ("full+tofu", "forget10_perturbed", "retain_perturbed", "real_faces", "real_world")

_STRING = Value("string")

IMAGE_CAPTION_FEATURES = Features({"image": Image(), "caption": _STRING, "name": _STRING})
# Image rows keep question/answer empty, TOFU rows keep image None and caption empty.
TOFU_FEATURES = Features(
    {"image": Image(), "caption": _STRING, "question": _STRING, "answer": _STRING}
)
PERTURBED_FEATURES = Features(
    {
        "image": Image(),
        "caption": _STRING,
        "name": _STRING,
        "paraphrased_caption": _STRING,
        "perturbed_captions": List(_STRING),
        "perturbed_names": List(_STRING),
    }
)
TEXT_PERTURBED_FEATURES = Features(
    {
        "question": _STRING,
        "answer": _STRING,
        "paraphrased_answer": _STRING,
        "perturbed_answer": List(_STRING),
        "name": _STRING,  # the person; empty when read from TOFU, which does not name rows
    }
)
REAL_FACES_FEATURES = Features({"image": Image(), "answer": _STRING, "options": List(_STRING)})
REAL_WORLD_FEATURES = Features(
    {"image": Image(), "question": _STRING, "answer": _STRING, "options": List(_STRING)}
)

CONFIG_FEATURES: dict[str, Features] = {
    **{split: IMAGE_CAPTION_FEATURES for split in IMAGE_SPLITS},
    **{f"{split}+tofu": TOFU_FEATURES for split in IMAGE_SPLITS},
    **{split: PERTURBED_FEATURES for split in PERTURBED_SPLITS},
    **{split: TEXT_PERTURBED_FEATURES for split in TEXT_PERTURBED_SPLITS},
    "real_faces": REAL_FACES_FEATURES,
    "real_world": REAL_WORLD_FEATURES,
}
# Every name load_clear accepts: the written configs plus the hub's aliases of them.
LOADABLE_CONFIGS: dict[str, Features] = {
    **CONFIG_FEATURES,
    **{alias: CONFIG_FEATURES[target] for alias, target in CONFIG_ALIASES.items()},
}


def forget_percent(forget_split: str) -> int:
    """Percentage of persons a forget split holds (forget05 -> 5); validates the name."""
    if forget_split not in FORGET_SPLITS:
        raise ConfigError(
            f"unknown forget split {forget_split!r}; expected one of {', '.join(FORGET_SPLITS)}"
        )
    return int(forget_split.removeprefix("forget"))


def retain_split_for(forget_split: str) -> str:
    """The retain config that is the exact complement of a forget config (forget10 -> retain90)."""
    return f"retain{100 - forget_percent(forget_split):02d}"


def training_config_for(role: str, forget_split: str) -> str:
    """Original sees everything; Gold never sees the forget persons."""
    return "full+tofu" if role == "original" else f"{retain_split_for(forget_split)}+tofu"
