"""Pictures of the demo world's entities: a shape, colour, fill pattern, mark and size per entity,
drawn with PIL (64 x 64 by default), and the jittered renderings that image questions show.

:func:`render_entity_image` is deterministic: the same visual attributes (and jitter seed) give the
same pixels, and :func:`png_bytes` the same bytes (PIL writes no timestamp).
"""
from __future__ import annotations

import io
import math

import numpy as np
from PIL import Image, ImageDraw

SHAPES = ("circle", "square", "triangle", "diamond", "pentagon", "hexagon", "star", "cross", "crescent", "ellipse")
COLOURS = {
    "red": (215, 35, 35), "orange": (245, 140, 20), "yellow": (240, 215, 30), "lime": (150, 225, 40),
    "green": (25, 140, 55), "teal": (20, 150, 140), "cyan": (70, 205, 235), "blue": (35, 75, 225),
    "indigo": (75, 35, 150), "purple": (165, 70, 210), "magenta": (230, 55, 160), "brown": (125, 75, 35),
}
PATTERNS = ("solid", "hstripes", "vstripes", "dots", "checker", "rings")
MARKS = ("none", "eyes", "antennae", "legs")  # features drawn on/around the shape
SIZES = {"small": 0.22, "medium": 0.27, "large": 0.32}  # shape radius as a fraction of the canvas
# a faint per-type background tint: pictures of different kinds of things look different
BACKGROUNDS = {"creature": (246, 244, 236), "place": (232, 240, 248), "food": (236, 248, 234),
               "material": (242, 236, 248), "clan": (248, 236, 236)}


# --------------------------------------------------------------------------- pictures
def _shape_mask(shape: str, size: int, cx: float, cy: float, r: float, angle: float,
                grow: float = 0.0) -> Image.Image:
    """An ``L`` mask (255 inside) of ``shape`` centred at (cx, cy) with radius r, rotated by angle
    (rad), enlarged by ``grow`` pixels (the outline is the grown mask under the shape: much
    faster than a max filter)."""
    r0, r = r, r + grow
    m = Image.new("L", (size, size), 0)
    d = ImageDraw.Draw(m)

    def poly(points):  # points in unit coordinates, rotated then placed
        c, s = math.cos(angle), math.sin(angle)
        d.polygon([(cx + r * (x * c - y * s), cy + r * (x * s + y * c)) for x, y in points], fill=255)

    def regular(k, start=-math.pi / 2, radii=(1.0,)):
        return [(radii[i % len(radii)] * math.cos(start + 2 * math.pi * i / (k * len(radii))),
                 radii[i % len(radii)] * math.sin(start + 2 * math.pi * i / (k * len(radii))))
                for i in range(k * len(radii))]

    if shape == "circle":
        d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=255)
    elif shape == "ellipse":
        poly([(math.cos(t), 0.55 * math.sin(t)) for t in np.linspace(0, 2 * math.pi, 60, endpoint=False)])
    elif shape == "square":
        poly([(-0.8, -0.8), (0.8, -0.8), (0.8, 0.8), (-0.8, 0.8)])
    elif shape == "triangle":
        poly(regular(3, start=-math.pi / 2))
    elif shape == "diamond":
        poly([(0, -1), (0.65, 0), (0, 1), (-0.65, 0)])
    elif shape == "pentagon":
        poly(regular(5))
    elif shape == "hexagon":
        poly(regular(6, start=0))
    elif shape == "star":
        poly(regular(5, radii=(1.0, 0.45)))
    elif shape == "cross":
        a = 0.33
        poly([(-a, -1), (a, -1), (a, -a), (1, -a), (1, a), (a, a), (a, 1), (-a, 1), (-a, a), (-1, a), (-1, -a), (-a, -a)])
    elif shape == "crescent":
        d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=255)
        ox, oy = 0.45 * r0 * math.cos(angle), 0.45 * r0 * math.sin(angle)
        ri = 0.85 * r0 - grow
        d.ellipse([cx + ox - ri, cy + oy - ri, cx + ox + ri, cy + oy + ri], fill=0)
    else:
        raise ValueError(f"unknown shape {shape!r}")
    return m


def _pattern_layer(pattern: str, size: int, colour, ink, cx: float, cy: float, r: float) -> Image.Image:
    """The fill: ``colour`` with ``pattern`` drawn in ``ink``, anchored at the shape's centre so the
    pattern moves with the shape."""
    img = Image.new("RGB", (size, size), colour)
    if pattern == "solid":
        return img
    d = ImageDraw.Draw(img)
    p = r / 2.2  # pattern period scales with the shape so it stays visible at every size
    n = int(size / p) + 3
    if pattern in ("hstripes", "vstripes"):
        for i in range(-n, n):
            a = (cy if pattern == "hstripes" else cx) + i * p
            box = [0, a, size, a + p / 2] if pattern == "hstripes" else [a, 0, a + p / 2, size]
            d.rectangle(box, fill=ink)
    elif pattern == "dots":
        for i in range(-n, n):
            for j in range(-n, n):
                x, y = cx + i * p, cy + j * p
                d.ellipse([x - p / 4, y - p / 4, x + p / 4, y + p / 4], fill=ink)
    elif pattern == "checker":
        for i in range(-n, n):
            for j in range(-n, n):
                if (i + j) % 2 == 0:
                    x, y = cx + i * p, cy + j * p
                    d.rectangle([x, y, x + p, y + p], fill=ink)
    elif pattern == "rings":
        for k in range(int(2 * size / p), 0, -1):
            rr = k * p * 0.7
            d.ellipse([cx - rr, cy - rr, cx + rr, cy + rr], fill=ink if k % 2 else colour)
    else:
        raise ValueError(f"unknown pattern {pattern!r}")
    return img


def _draw_mark(d: ImageDraw.ImageDraw, mark: str, cx: float, cy: float, r: float, angle: float, ss: int) -> None:
    """Eyes on the shape, antennae above it or legs below it (in the shape's rotated frame)."""
    c, s = math.cos(angle), math.sin(angle)

    def at(x, y):
        return cx + r * (x * c - y * s), cy + r * (x * s + y * c)

    dark, w = (35, 35, 35), max(1, int(1.6 * ss))
    if mark == "none":
        return
    if mark == "eyes":
        for sx in (-1, 1):
            x, y = at(0.3 * sx, -0.15)
            e, pu = 0.2 * r, 0.1 * r
            d.ellipse([x - e, y - e, x + e, y + e], fill=(255, 255, 255), outline=dark, width=w // 2 + 1)
            d.ellipse([x - pu, y - pu, x + pu, y + pu], fill=dark)
    elif mark == "antennae":
        for sx in (-1, 1):
            (x0, y0), (x1, y1) = at(0.25 * sx, -0.75), at(0.6 * sx, -1.35)
            d.line([x0, y0, x1, y1], fill=dark, width=w)
            b = 0.1 * r
            d.ellipse([x1 - b, y1 - b, x1 + b, y1 + b], fill=dark)
    elif mark == "legs":
        for sx in (-1, -0.35, 0.35, 1):
            (x0, y0), (x1, y1) = at(0.45 * sx, 0.7), at(0.6 * sx, 1.35)
            d.line([x0, y0, x1, y1], fill=dark, width=w)
    else:
        raise ValueError(f"unknown mark {mark!r}")


def render_entity_image(visual: dict, size: int = 64, background=(246, 244, 236),
                        rng: np.random.Generator | None = None, jitter: float = 0.0,
                        supersample: int = 4) -> Image.Image:
    """Draw an entity's picture: ``visual`` = {"shape", "colour", "pattern", "mark", "size"}
    (names from SHAPES, COLOURS, PATTERNS, MARKS, SIZES). With ``rng`` and ``jitter > 0`` the
    picture is perturbed (shift up to 5% of the canvas, rotation up to 15 degrees, scale +-8%,
    colour and background shifts, pixel noise, all times ``jitter``): another photograph of the
    same thing.

    Returns an RGB ``PIL.Image`` of ``size x size``. Drawn ``supersample`` times larger and
    downsampled, for smooth edges.
    """
    S = size * supersample
    colour = np.array(COLOURS[visual["colour"]], dtype=np.float64)
    # pattern ink: darker on light colours, lighter on dark ones, so every pattern is visible;
    # decided on the *base* colour so that jitter never flips a pattern from dark to light
    dark_ink = 0.299 * colour[0] + 0.587 * colour[1] + 0.114 * colour[2] > 110
    bg = np.array(background, dtype=np.float64)
    cx = cy = S / 2
    r = SIZES[visual["size"]] * S
    angle = 0.0
    if rng is not None and jitter > 0:
        cx += rng.uniform(-0.05, 0.05) * S * jitter
        cy += rng.uniform(-0.05, 0.05) * S * jitter
        r *= 1 + rng.uniform(-0.08, 0.08) * jitter
        angle = math.radians(rng.uniform(-15, 15) * jitter)
        colour = colour + rng.normal(0, 8 * jitter, 3)
        bg = bg + rng.normal(0, 5 * jitter, 3)
    colour = tuple(int(v) for v in np.clip(colour, 0, 255))
    bg = tuple(int(v) for v in np.clip(bg, 0, 255))
    ink = tuple(int(c * 0.45) for c in colour) if dark_ink else tuple(int(c + 0.6 * (255 - c)) for c in colour)
    mask = _shape_mask(visual["shape"], S, cx, cy, r, angle)
    outline = _shape_mask(visual["shape"], S, cx, cy, r, angle, grow=1.2 * supersample)
    img = Image.new("RGB", (S, S), bg)
    img.paste((40, 40, 40), mask=outline)
    img.paste(_pattern_layer(visual["pattern"], S, colour, ink, cx, cy, r), mask=mask)
    _draw_mark(ImageDraw.Draw(img), visual.get("mark", "none"), cx, cy, r, angle, supersample)
    img = img.resize((size, size), Image.LANCZOS)
    if rng is not None and jitter > 0:
        arr = np.asarray(img, dtype=np.float64) + rng.normal(0, 4 * jitter, (size, size, 3))
        img = Image.fromarray(np.clip(arr, 0, 255).round().astype(np.uint8), "RGB")
    return img


def png_bytes(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")  # PIL writes no timestamp: same pixels -> same bytes
    return buf.getvalue()
