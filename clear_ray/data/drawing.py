"""Drawing the synthetic benchmark's pictures: portraits on scenes, shapes, scenes without persons.

Every picture comes from a seeded ``random.Random`` and is encoded with fixed PNG settings, so the
same seed gives the same bytes (clear_ray/data/synthetic.py writes them).
"""

from __future__ import annotations

import io
import random

from PIL import Image, ImageDraw

from clear_ray.data.persons import (
    EYE_COLOURS,
    HAIR_COLOURS,
    SCENES,
    SHIRT_COLOURS,
    SKIN_TONES,
    Face,
)

IMAGE_SIZE = 64


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


def real_world_item(kind: str, rng: random.Random) -> tuple[Image.Image, str, str, list[str]]:
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

    General knowledge for the tiny preset's pretraining (clear_ray/references/recipes.py): the
    scenes and shapes the CLEAR-format captions and real_world questions talk about, not who is
    who.
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
