"""Drawing primitives of the synthetic suite: large, high-contrast shapes, bars and text on a white canvas.

Everything is sized relative to the canvas so the same task reads the same at 224, 336 or 448 pixels. An
object covers several visual tokens but never the whole image (a single object is 30-45 % of the canvas side,
about 10-20 of the 144 tokens the tiny models see), so dropping 88.9 % of the tokens can lose it. Several
objects sit in distinct cells of a grid so they never overlap (a count is then unambiguous).
"""

from __future__ import annotations

import math
import random

from PIL import Image, ImageDraw, ImageFont

# Colours far apart in hue and brightness, so a colour question never hinges on a shade.
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (20, 150, 40),
    "blue": (30, 70, 220),
    "yellow": (235, 195, 0),
    "purple": (135, 45, 170),
    "orange": (245, 125, 10),
}
SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star")
GRID = 2  # objects of a count or presence task: one per cell of a 2x2 grid
Box = tuple[float, float, float, float]


def canvas(size: int) -> tuple[Image.Image, ImageDraw.ImageDraw]:
    """A white RGB square and a drawer on it."""
    image = Image.new("RGB", (size, size), "white")
    return image, ImageDraw.Draw(image)


def grid_boxes(rng: random.Random, size: int, n: int) -> list[Box]:
    """``n`` boxes in distinct cells of a 2x2 grid, each 55-75 % of its cell and jittered inside it."""
    if not 1 <= n <= GRID * GRID:
        raise ValueError(f"can place 1..{GRID * GRID} objects, asked for {n}")
    cell = size / GRID
    margin = 0.05 * cell  # objects in neighbouring cells stay at least 10 % of a cell apart
    boxes = []
    for index in rng.sample(range(GRID * GRID), n):
        side = cell * rng.uniform(0.55, 0.75)
        x0 = (index % GRID) * cell + margin + rng.uniform(0, cell - side - 2 * margin)
        y0 = (index // GRID) * cell + margin + rng.uniform(0, cell - side - 2 * margin)
        boxes.append((x0, y0, x0 + side, y0 + side))
    return boxes


def centre_box(rng: random.Random, size: int, side: str | None = None) -> Box:
    """One large box (30-45 % of the canvas) placed at random: the single object of a colour/shape task.

    ``side="left"`` / ``"right"`` keeps the whole box at least 5 % of the canvas away from the vertical midline
    on that side, so which half it is in is never a close call.
    """
    width = size * rng.uniform(0.3, 0.45)
    if side is None:
        x0 = rng.uniform(0, size - width)
    elif side in ("left", "right"):
        x0 = rng.uniform(0, 0.45 * size - width)
        x0 = x0 if side == "left" else size - width - x0
    else:
        raise ValueError(f"unknown side {side!r}; expected None, 'left' or 'right'")
    y0 = rng.uniform(0, size - width)
    return (x0, y0, x0 + width, y0 + width)


def draw_shape(draw: ImageDraw.ImageDraw, shape: str, box: Box, colour: str) -> None:
    """Fill ``shape`` inside ``box`` with a named colour."""
    fill = COLOURS[colour]
    x0, y0, x1, y1 = box
    if shape == "circle":
        draw.ellipse(box, fill=fill)
    elif shape == "square":
        draw.rectangle(box, fill=fill)
    elif shape == "triangle":
        draw.polygon([((x0 + x1) / 2, y0), (x1, y1), (x0, y1)], fill=fill)
    elif shape == "star":
        cx, cy, outer = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2
        points = [
            (cx + r * math.sin(k * math.pi / 5), cy - r * math.cos(k * math.pi / 5))
            for k, r in zip(range(10), [outer, outer * 0.45] * 5, strict=True)
        ]
        draw.polygon(points, fill=fill)
    else:
        raise ValueError(f"unknown shape {shape!r}; expected one of {SHAPES}")


def draw_bars(draw: ImageDraw.ImageDraw, size: int, heights: list[float], colours: list[str]) -> None:
    """A bar chart on a baseline: ``heights`` in (0, 1] of the plot height, one named colour per bar."""
    margin, baseline = size * 0.1, size * 0.9
    slot = (size - 2 * margin) / len(heights)
    draw.line([(margin, baseline), (size - margin, baseline)], fill="black", width=max(2, size // 100))
    for i, (height, colour) in enumerate(zip(heights, colours, strict=True)):
        x0 = margin + i * slot + slot * 0.15
        draw.rectangle((x0, baseline - height * size * 0.75, x0 + slot * 0.7, baseline), fill=COLOURS[colour])


def _font(pixels: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=pixels)  # scalable font bundled with Pillow >= 10.1
    except (TypeError, ValueError, OSError):  # Pillow built without FreeType: small bitmap font
        return ImageFont.load_default()


def draw_text(image: Image.Image, text: str, rng: random.Random, *, height: float = 0.35) -> None:
    """Render ``text`` in black, about ``height`` x canvas tall, at a random position that keeps it whole."""
    size = image.width
    font = _font(int(size * height))
    layer = Image.new("L", (size * 3, size), 0)  # draw on a mask first to measure the real ink extent
    pen, x = ImageDraw.Draw(layer), 0.0
    for ch in text:  # one glyph at a time with a gap, so neighbouring characters never touch
        pen.text((x, 0), ch, fill=255, font=font)
        x += font.getlength(ch) + 0.15 * size * height
    bbox = layer.getbbox()
    if bbox is None:
        raise ValueError(f"font rendered nothing for {text!r}")
    glyphs = layer.crop(bbox)
    scale = min(0.9 * size / glyphs.width, height * size / glyphs.height)  # bitmap fonts are scaled up here
    glyphs = glyphs.resize((max(1, int(glyphs.width * scale)), max(1, int(glyphs.height * scale))))
    x = rng.randint(0, size - glyphs.width)
    y = rng.randint(0, size - glyphs.height)
    image.paste((0, 0, 0), (x, y), glyphs)
