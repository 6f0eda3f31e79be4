"""The synthetic people and cameras: identity looks, camera styles, drawing (Section 3.1.1).

Each identity has a stable `Look` (clothing colours and pattern, hair, skin, bag, body shape);
groups of look-alike identities wear the same uniform and differ only in small details (Section
1.2.3). Each of the six `CAMERAS` has its own scene, lighting, colour cast, blur, resolution,
viewing direction and scale, so an untrained network matches cameras rather than people;
`render_image` adds pose, crop jitter and sometimes an occlusion. `synthetic` plans and writes the
dataset from these; the same seed draws the same pixels.
"""

from __future__ import annotations

import colorsys
import dataclasses
import functools
import itertools
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFilter

KINDS = ("person", "query", "junk", "distractor")
VIEWS = ("front", "back", "left", "right")


@dataclass(frozen=True)
class CameraStyle:
    """What one camera does to an image: scene, light, optics and walking direction."""

    wall: tuple
    floor: tuple
    horizon: float  # fraction of the image height where the floor starts
    texture: str
    gains: tuple  # colour cast per RGB channel
    brightness: float
    contrast: float
    gamma: float
    light_slope: float  # illumination change from left to right
    blur: float  # Gaussian radius in pixels at width 64
    downscale: float  # > 1: a low-resolution camera
    noise: float
    jpeg_quality: int
    person_scale: float  # person height / image height
    view_weights: tuple  # chance of front, back, left, right


# fmt: off
CAMERAS: dict[int, CameraStyle] = {camera: CameraStyle(*values) for camera, values in {
    #  wall             floor            horizon texture   gains               bright contr gamma
    #  slope blur  down noise jpeg scale view weights
    1: ((196, 184, 160), (128, 126, 122), 0.58, "tiles", (1.12, 1.0, 0.84), 10, 1.0, 1.0,
        0.1, 0.3, 1.0, 3, 92, 0.86, (0.45, 0.35, 0.1, 0.1)),
    2: ((70, 82, 104), (52, 56, 62), 0.52, "panels", (0.84, 0.95, 1.18), -18, 0.9, 1.1,
        -0.12, 0.6, 1.0, 4, 85, 0.8, (0.2, 0.5, 0.15, 0.15)),
    3: ((206, 206, 198), (172, 168, 160), 0.62, "bushes", (1.0, 1.05, 0.98), 28, 0.78, 0.85,
        0.05, 0.4, 1.0, 2, 90, 0.9, (0.35, 0.25, 0.2, 0.2)),
    4: ((140, 62, 48), (96, 76, 60), 0.55, "bricks", (0.9, 1.12, 0.9), -24, 1.12, 1.05,
        0.18, 0.8, 1.0, 6, 80, 0.74, (0.1, 0.2, 0.35, 0.35)),
    5: ((120, 150, 170), (110, 100, 104), 0.6, "glass", (1.1, 0.9, 1.06), -4, 1.2, 1.0,
        -0.06, 0.5, 1.0, 4, 88, 0.88, (0.3, 0.3, 0.2, 0.2)),
    6: ((92, 92, 96), (60, 60, 64), 0.45, "road", (1.0, 0.96, 0.9), 0, 0.95, 1.0,
        0.0, 0.4, 2.6, 5, 75, 0.83, (0.25, 0.25, 0.25, 0.25)),
}.items()}
NEUTRALS = [(25, 25, 28), (60, 60, 62), (120, 120, 118), (180, 180, 176), (232, 230, 226),
            (30, 36, 72), (200, 182, 140), (92, 62, 40)]
SKINS = [(238, 205, 180), (224, 180, 150), (198, 150, 110), (160, 110, 75), (110, 72, 48)]
HAIRS = [(20, 16, 14), (58, 38, 24), (110, 76, 40), (200, 170, 110), (150, 150, 150),
         (120, 30, 30)]
# fmt: on


# ----------------------------------------------------------------------------- identity looks


@dataclass(frozen=True)
class Look:
    """One identity's stable appearance; colours are RGB tuples in [0, 255]."""

    skin: tuple
    hair: tuple
    hair_style: int  # 0 short, 1 long, 2 cap
    cap: tuple
    upper: tuple
    upper_second: tuple
    pattern: int  # 0 plain, 1 horizontal stripes, 2 vertical stripes, 3 checks, 4 two-tone, 5 logo
    stripe_period: float  # fraction of the person's height
    long_sleeves: bool
    lower: tuple
    lower_style: int  # 0 trousers, 1 shorts, 2 skirt
    shoes: tuple
    bag_style: int  # 0 none, 1 backpack, 2 shoulder bag, 3 hand bag
    bag: tuple
    bag_side: int  # -1 left, +1 right
    height: float  # fraction of the camera's person height
    build: float  # width scale


def _jitter(rng: np.random.Generator, colour: tuple, amount: float) -> tuple:
    return tuple(float(np.clip(value + rng.normal(0, amount), 0, 255)) for value in colour)


def _pick(rng: np.random.Generator, palette: list, amount: float = 10) -> tuple:
    return _jitter(rng, palette[rng.integers(len(palette))], amount)


def _clothing_colour(rng: np.random.Generator) -> tuple:
    """Half of all clothes are dark or neutral, as on a real street; the rest are saturated."""
    if rng.random() < 0.5:
        return _pick(rng, NEUTRALS)
    rgb = colorsys.hsv_to_rgb(rng.random(), rng.uniform(0.45, 0.95), rng.uniform(0.35, 0.95))
    return tuple(255 * value for value in rgb)


def random_look(rng: np.random.Generator) -> Look:
    """Draw one identity's appearance."""
    return Look(
        skin=_pick(rng, SKINS, 8),
        hair=_pick(rng, HAIRS, 8),
        hair_style=int(rng.choice(3, p=[0.55, 0.3, 0.15])),
        cap=_clothing_colour(rng),
        upper=_clothing_colour(rng),
        upper_second=_clothing_colour(rng),
        pattern=int(rng.choice(6, p=[0.4, 0.14, 0.1, 0.08, 0.14, 0.14])),
        stripe_period=float(rng.uniform(0.045, 0.09)),
        long_sleeves=bool(rng.random() < 0.6),
        lower=_clothing_colour(rng),
        lower_style=int(rng.choice(3, p=[0.7, 0.18, 0.12])),
        shoes=_pick(rng, NEUTRALS),
        bag_style=int(rng.choice(4, p=[0.4, 0.25, 0.2, 0.15])),
        bag=_clothing_colour(rng),
        bag_side=int(rng.choice([-1, 1])),
        height=float(rng.uniform(0.88, 1.0)),
        build=float(rng.uniform(0.85, 1.2)),
    )


def _different_colour(rng: np.random.Generator, palette: list, current: tuple) -> tuple:
    """A palette colour clearly unlike `current` (a look-alike's changed detail must show)."""
    distances = [np.abs(np.subtract(colour, current)).sum() for colour in palette]
    options = [colour for colour, distance in zip(palette, distances, strict=True) if distance > 90]
    return _jitter(rng, options[rng.integers(len(options))], 8)


LOOK_ALIKE_DETAILS = 6  # hair colour, bag, shoes, skin, sleeves, cap


def look_alike(base: Look, rng: np.random.Generator, changed: tuple[int, int] = (0, 1)) -> Look:
    """The uniform and body of `base` with two small details changed (Section 1.2.3).

    `changed` picks two of the `LOOK_ALIKE_DETAILS` details: hair colour, bag, shoes, skin,
    sleeve length, cap.
    """
    details = [
        {"hair": _different_colour(rng, HAIRS, base.hair)},
        {"bag_style": (base.bag_style + int(rng.integers(1, 4))) % 4, "bag": _clothing_colour(rng)},
        {"shoes": _different_colour(rng, NEUTRALS, base.shoes)},
        {"skin": _different_colour(rng, SKINS, base.skin)},
        {"long_sleeves": not base.long_sleeves},
        {"hair_style": 0 if base.hair_style == 2 else 2, "cap": _clothing_colour(rng)},
    ]
    changes = {"height": float(np.clip(base.height + rng.normal(0, 0.02), 0.86, 1.0))}
    for index in changed:
        changes.update(details[index])
    return dataclasses.replace(base, **changes)


def make_looks(count: int, rng: np.random.Generator, lookalike_fraction: float) -> list[Look]:
    """`count` looks, about `lookalike_fraction` of them in look-alike groups of 2 to 4.

    Members of a group change different pairs of details, so no two of them look the same.
    """
    looks = [random_look(rng) for _ in range(count)]
    detail_pairs = list(itertools.combinations(range(LOOK_ALIKE_DETAILS), 2))
    members = rng.permutation(count)[: round(lookalike_fraction * count)]
    start = 0
    while len(members) - start >= 2:
        group = members[start : start + int(rng.integers(2, 5))]
        pairs = rng.choice(len(detail_pairs), size=len(group) - 1, replace=False)
        for member, pair in zip(group[1:], pairs, strict=True):
            looks[member] = look_alike(looks[group[0]], rng, detail_pairs[pair])
        start += len(group)
    return looks


# ----------------------------------------------------------------------------- drawing


class _Canvas:
    """A float RGB image plus broadcastable pixel-centre coordinates for drawing masks."""

    def __init__(self, height: int, width: int):
        self.height, self.width = height, width
        self.ys = np.arange(height, dtype=np.float32)[:, None] + 0.5
        self.xs = np.arange(width, dtype=np.float32)[None, :] + 0.5
        self.pixels = np.zeros((height, width, 3), np.float32)

    def ellipse(self, centre_y, centre_x, radius_y, radius_x) -> np.ndarray:
        return ((self.ys - centre_y) / radius_y) ** 2 + ((self.xs - centre_x) / radius_x) ** 2 <= 1

    def trapezoid(self, top, bottom, top_x, bottom_x, top_half, bottom_half) -> np.ndarray:
        """Rows `top`..`bottom`; centre and half-width move linearly from top to bottom."""
        fraction = (self.ys - top) / max(bottom - top, 1e-3)
        centre = top_x + fraction * (bottom_x - top_x)
        half = top_half + fraction * (bottom_half - top_half)
        return (self.ys >= top) & (self.ys < bottom) & (np.abs(self.xs - centre) < half)

    def fill(self, mask: np.ndarray, colour) -> None:
        if mask.shape != self.pixels.shape[:2]:
            mask = np.broadcast_to(mask, self.pixels.shape[:2])
        self.pixels[mask] = colour


def _draw_background(canvas: _Canvas, camera: CameraStyle, rng: np.random.Generator) -> None:
    """The camera's scene: wall above the horizon, floor below, a texture and some clutter."""
    height, width, ys, xs = canvas.height, canvas.width, canvas.ys, canvas.xs
    unit = width / 64
    horizon = (camera.horizon + rng.normal(0, 0.03)) * height
    floor, wall = ys >= horizon, ys < horizon
    canvas.fill(wall, camera.wall)
    canvas.fill(floor, camera.floor)
    x, y = xs + rng.uniform(0, 40), ys + rng.uniform(0, 40)  # the box's place in the frame
    if camera.texture == "tiles":
        canvas.fill(floor & ((x % (14 * unit) < unit) | (y % (9 * unit) < unit)), (96, 94, 92))
    elif camera.texture == "panels":
        canvas.fill(wall & (x % (16 * unit) < 8 * unit), (96, 110, 136))
    elif camera.texture == "bushes":
        for _ in range(int(rng.integers(3, 7))):
            centre_y, centre_x = horizon - rng.uniform(0, 18) * unit, rng.uniform(0, width)
            bush = canvas.ellipse(centre_y, centre_x, *rng.uniform([6, 8], [14, 16]) * unit)
            canvas.fill(bush & wall, rng.uniform([30, 90, 30], [70, 140, 60]))
    elif camera.texture == "bricks":
        row = np.floor(y / (5 * unit))
        joints = ((x + 6 * unit * (row % 2)) % (12 * unit) < unit) | (y % (5 * unit) < unit)
        canvas.fill(wall & joints, (170, 160, 150))
    elif camera.texture == "glass":
        glare = 45 * np.maximum(np.sin(x / (5 * unit)), 0) ** 4
        canvas.pixels += (glare * wall)[..., None]
    elif camera.texture == "road":
        marking = np.abs(ys - horizon - rng.uniform(0.1, 0.4) * height) < 2.5 * unit
        canvas.fill(marking & (x % (30 * unit) < 18 * unit), (220, 214, 180))
    for _ in range(int(rng.integers(0, 3))):  # bins, signs, bicycles: clutter behind the people
        top, centre = rng.uniform(0.2, 0.7) * height, rng.uniform(0, width)
        half = rng.uniform(2, 8) * unit
        bottom = top + rng.uniform(0.1, 0.3) * height
        canvas.fill(
            canvas.trapezoid(top, bottom, centre, centre, half, half), _clothing_colour(rng)
        )


def draw_person(
    canvas: _Canvas, look: Look, view: str, centre: float, top: float, height: float, phase: float
) -> None:
    """A walking pedestrian seen from `view`; head at `top`, feet at ``top + height``."""
    side = view in ("left", "right")
    facing = -1 if view == "left" else 1

    def part(top_y, bottom_y, top_x, bottom_x, top_half, bottom_half):  # in person heights
        return canvas.trapezoid(
            top + top_y * height,
            top + bottom_y * height,
            centre + top_x * height,
            centre + bottom_x * height,
            top_half * height,
            bottom_half * height,
        )

    shoulder = 0.125 * look.build * (0.62 if side else 1)
    hip = 0.1 * look.build * (0.7 if side else 1)
    stride = (0.11 if side else 0.03) * np.sin(phase)
    swing = (0.1 if side else 0.02) * np.sin(phase)
    if look.bag_style == 1 and side:  # a backpack sticks out behind the walker
        behind = -facing * (shoulder + 0.03)
        canvas.fill(part(0.17, 0.44, behind, behind, 0.05, 0.05), look.bag)
    for sign in (-1, 1):  # legs, shorts and shoes
        hip_x = sign * (0.012 if side else 0.045) * look.build
        foot_x = hip_x + sign * stride
        leg_colour = look.lower if look.lower_style == 0 else look.skin
        canvas.fill(part(0.5, 0.94, hip_x, foot_x, 0.05, 0.036), leg_colour)
        if look.lower_style == 1:
            canvas.fill(part(0.5, 0.73, hip_x, (hip_x + foot_x) / 2, 0.055, 0.048), look.lower)
        shoe_x = foot_x + (facing * 0.012 if side else 0)
        canvas.fill(part(0.935, 0.97, shoe_x, shoe_x, 0.04, 0.048), look.shoes)
    if look.lower_style == 2:
        canvas.fill(part(0.48, 0.76, 0, 0, hip, 1.5 * hip), look.lower)
    torso = part(0.15, 0.52, 0, 0, shoulder, hip)
    ys, xs, period = canvas.ys - top, canvas.xs - centre, look.stripe_period * height
    second = np.zeros((1, 1), bool)  # where the upper body shows its second colour
    if look.pattern in (1, 3):
        second = (ys / period) % 1 < 0.5
    if look.pattern in (2, 3):
        second = second ^ ((xs / period) % 1 < 0.5)
    if look.pattern == 4:
        second = ys > 0.32 * height
    if look.pattern == 5 and view == "front":
        second = part(0.23, 0.31, 0, 0, 0.045, 0.045)
    canvas.fill(torso & ~second, look.upper)
    canvas.fill(torso & second, look.upper_second)
    for sign in (-1, 1):  # arms: sleeves in the upper colour, hands and short sleeves in skin
        start = sign * 0.02 if side else sign * (shoulder - 0.02)
        end = start + sign * (swing if side else 0.012 + swing)
        arm = part(0.15, 0.52, start, end, 0.035, 0.028)
        canvas.fill(arm, look.skin)
        sleeve_end = top + (0.48 if look.long_sleeves else 0.28) * height
        canvas.fill(arm & (canvas.ys < sleeve_end), look.upper)
        if look.bag_style == 3 and sign == look.bag_side:
            canvas.fill(part(0.51, 0.61, end, end, 0.04, 0.05), look.bag)
    if look.hair_style == 1:  # long hair falls to the shoulders (in front of the back view)
        hair = part(0.075, 0.22 if view != "back" else 0.23, 0, 0, 0.055, 0.058)
        canvas.fill(hair, look.hair)
    canvas.fill(part(0.12, 0.16, 0, 0, 0.02, 0.022), look.skin)  # neck
    head = canvas.ellipse(top + 0.075 * height, centre, 0.065 * height, 0.048 * height)
    crown = head & (canvas.ys < top + 0.06 * height)
    if side:
        crown |= head & (facing * xs < -0.01 * height)
    canvas.fill(head, look.hair if view == "back" else look.skin)
    canvas.fill(crown, look.cap if look.hair_style == 2 else look.hair)
    if look.hair_style == 2:  # cap brim
        brim = facing * 0.034 if side else 0
        canvas.fill(part(0.055, 0.068, brim, brim, 0.055, 0.055), look.cap)
    if look.bag_style == 1 and view == "back":
        canvas.fill(part(0.18, 0.46, 0, 0, 0.085, 0.095), look.bag)
    elif look.bag_style == 1 and view == "front":  # only the straps show
        for sign in (-1, 1):
            strap = sign * 0.6 * shoulder
            canvas.fill(part(0.15, 0.35, strap, strap, 0.012, 0.012), look.bag)
    elif look.bag_style == 2:  # shoulder bag: a diagonal strap and the bag at the hip
        strap = part(0.15, 0.5, -look.bag_side * shoulder, look.bag_side * hip, 0.014, 0.014)
        canvas.fill(torso & strap, look.bag)
        bag_x = look.bag_side * (hip + 0.04)
        canvas.fill(part(0.43, 0.55, bag_x, bag_x, 0.055, 0.06), look.bag)


def _draw_occlusion(canvas: _Canvas, rng: np.random.Generator, camera: CameraStyle) -> None:
    """Something between camera and person: a pole, a parked object or a passer-by."""
    height, width = canvas.height, canvas.width
    kind = rng.integers(3)
    if kind == 0:
        left = rng.uniform(-0.05, 0.9) * width
        pole = (canvas.xs >= left) & (canvas.xs < left + rng.uniform(0.08, 0.16) * width)
        canvas.fill(pole, _pick(rng, NEUTRALS, 12))
    elif kind == 1:
        top, centre, half = rng.uniform([0.6, 0.2, 0.3], [0.82, 0.8, 0.6]) * (height, width, width)
        canvas.fill(
            canvas.trapezoid(top, height, centre, centre, half, half), _clothing_colour(rng)
        )
        band = canvas.trapezoid(top + 0.06 * height, top + 0.1 * height, centre, centre, half, half)
        canvas.fill(band, _jitter(rng, (40, 40, 44), 10))
    else:
        centre = width * (0.5 + rng.choice([-1, 1]) * rng.uniform(0.55, 0.75))
        person_height = camera.person_scale * height * rng.uniform(1.0, 1.2)
        top = height - person_height * rng.uniform(0.95, 1.05)
        view = VIEWS[rng.integers(4)]
        draw_person(canvas, random_look(rng), view, centre, top, person_height, rng.uniform(0, 7))


@functools.cache
def _gamma_table(gamma: float) -> np.ndarray:
    return np.round(255 * (np.arange(256) / 255) ** gamma).astype(np.uint8)


def _apply_camera(canvas: _Canvas, camera: CameraStyle, rng: np.random.Generator) -> np.ndarray:
    """Illumination slope, contrast, colour cast, gamma, resolution, blur and sensor noise."""
    height, width = canvas.height, canvas.width
    gains = np.asarray(camera.gains) * (1 + rng.normal(0, 0.03, size=3))
    brightness = camera.brightness + rng.normal(0, 6)
    slope = 1 + camera.light_slope * (canvas.xs / width - 0.5)
    # ((pixels * slope - 128) * contrast + 128 + brightness) * gains, as one multiply-add
    scale = (slope[..., None] * (camera.contrast * gains)).astype(np.float32)
    offset = ((128 * (1 - camera.contrast) + brightness) * gains).astype(np.float32)
    pixels = np.clip(canvas.pixels * scale + offset, 0, 255).astype(np.uint8)
    if camera.gamma != 1:
        pixels = _gamma_table(camera.gamma)[pixels]
    image = Image.fromarray(pixels)
    if camera.downscale > 1:
        small = (max(1, round(width / camera.downscale)), max(1, round(height / camera.downscale)))
        image = image.resize(small, Image.BILINEAR).resize((width, height), Image.BILINEAR)
    image = image.filter(ImageFilter.GaussianBlur(camera.blur * width / 64))
    noise = rng.standard_normal((height, width, 3), dtype=np.float32) * camera.noise
    return np.clip(np.asarray(image, np.float32) + noise, 0, 255).astype(np.uint8)


def render_image(
    look: Look | None,
    camera_id: int,
    view: str = "front",
    kind: str = "person",
    seed: int = 0,
    height: int = 128,
    width: int = 64,
    occlusion_probability: float = 0.2,
) -> np.ndarray:
    """Draw one uint8 ``(height, width, 3)`` RGB image of `look` seen by camera `camera_id`.

    `kind` follows Market-1501's labels (Section 3.1.1): "person" is a detector box (jittered
    crop), "query" a hand-drawn box (well centred), "junk" a box with intersection over union
    between 20 and 50 % (part of the person), "distractor" one below 20 % (background or a
    fragment of a stranger; `look` is ignored).
    """
    if camera_id not in CAMERAS or view not in VIEWS or kind not in KINDS:
        raise ValueError(
            f"camera_id={camera_id!r}, view={view!r}, kind={kind!r}; expected a camera in "
            f"{sorted(CAMERAS)}, a view in {VIEWS} and a kind in {KINDS}"
        )
    camera = CAMERAS[camera_id]
    rng = np.random.default_rng(seed)
    canvas = _Canvas(height, width)
    _draw_background(canvas, camera, rng)
    spread = 0.3 if kind == "query" else 1.0
    person_height = camera.person_scale * height * (1 + rng.normal(0, 0.05 * spread))
    centre = width * (0.5 + rng.normal(0, 0.07 * spread))
    if kind == "distractor":
        look = random_look(rng) if rng.random() < 0.4 else None
    if look is not None:
        person_height *= look.height
        top = (height - person_height) * rng.uniform(0.3, 0.7)
        top += rng.normal(0, 0.02 * spread) * height
        if kind in ("junk", "distractor"):  # a badly placed box: shifted aside or zoomed in
            shift, zoom = ((0.45, 0.7), (1.6, 2.2)) if kind == "junk" else ((0.65, 0.9), (2.4, 3.2))
            if rng.random() < 0.5:
                centre = width * (0.5 + rng.choice([-1, 1]) * rng.uniform(*shift))
            else:
                person_height *= rng.uniform(*zoom)
                top = rng.choice([-0.05 * height, 0.95 * height - person_height])
        draw_person(canvas, look, view, centre, top, person_height, rng.uniform(0, 2 * np.pi))
    if rng.random() < occlusion_probability:
        _draw_occlusion(canvas, rng, camera)
    return _apply_camera(canvas, camera, rng)
