"""``synthetic_reid``: the embedded default dataset — procedurally rendered pedestrians, no download.

Everything is a deterministic function of a seed: the cameras, the identities (their appearance and
attributes), which identity is seen by which camera, and every image, down to the JPEG bytes (fixed
Pillow encoder settings; identical bytes for the same seed, Pillow and libjpeg build).

**Identities.** The appearance of identity ``pid`` is a function of ``(seed, pid)`` only: build
(slim / normal / heavy, child proportions), garments (upper and lower colour from 8 named colours each,
sleeve length, trousers / shorts / skirt / long coat, stripes, a chest logo, belt, scarf), hair (long or
short, its colour), skin tone, shoes (light or dark) and accessories (backpack, shoulder bag, handbag,
hat, glasses), plus continuous nuisances within a class (exact shades, proportions, stripe period,
colours of the accessories). The 34 binary ``attributes`` (names in :data:`ATTRIBUTE_NAMES`) are read off
that appearance, so they are identical for all images of a pid and visible in the pictures (though not
always: a logo or glasses only from the front, a backpack mostly from the back). Two categorical labels
mirror the vehicle multi-task setting: ``color`` (8 classes) is the upper-garment colour and ``model``
(10 classes, :data:`MODEL_NAMES`) the silhouette: build x lower garment, or a long coat.

**Cameras.** ``num_cameras`` cameras (camids 1..N), each with its own viewpoint distribution (front /
back / side: what is visible changes), person scale, lighting, colour cast, background palette and
clutter, resolution (blur), noise level and occlusion rate. Each image adds pose (stride, arm swing,
position) and scale jitter, random background clutter, partial occlusion and sensor noise.

**Splits** (open set, Market-1501-like; identity pools are disjoint):

- ``train``   — all images of the training identities (each seen by 2-4 cameras).
- ``val``     — all images of held-out identities (in neither train nor test), for fitting search
    thresholds / windows after training. Use it all-against-all: every image is a query against the
    others, ignoring same-pid-same-camera pairs as the Market protocol does.
- ``query``   — test identities, one image from each of up to ``queries_per_id`` cameras.
- ``gallery`` — the other images of the test identities (every query has a match in another camera),
    plus distractors (``pid 0``: other people, each seen once) and junk (``pid -1``: bad detections
    mostly showing background), as Market-1501's ``bounding_box_test``.

Pids are spread over 1..9999 (not contiguous; training labels come from
:func:`jhash.data.pipeline.label_map`); paths follow Market's ``{pid:04d}_c{cam}s1_{n:06d}_00.jpg``.

**Configs.** ``default`` (128x64 images; see :data:`CONFIGS` for counts), ``tiny`` (for tests; 32x16,
a few identities, builds in about a second) and ``large`` (64x32 images; the ``default`` identities
with the gallery grown by 500,000 distractors for speed benchmarks). ``large`` can be prepared with
TFDS like the others (minutes), or read without preparing anything through :class:`SyntheticSource`,
a lazy random-access source with the interface of a TFDS data source (``len``, ``[i]``,
``__getitems__``) that renders records on demand and returns exactly the bytes the builder writes.
"""

from __future__ import annotations

import dataclasses
import functools
import io
from typing import Any, Sequence

import numpy as np
import tensorflow_datasets as tfds
from PIL import Image, ImageDraw

from jhash.data import common
from jhash.data.info import DatasetInfo

NAME = "synthetic_reid"

UPPER_COLORS = ("black", "white", "red", "purple", "yellow", "gray", "blue", "green")
LOWER_COLORS = ("black", "white", "pink", "yellow", "gray", "blue", "green", "brown")
_UPPER_RGB = ((28, 28, 32), (232, 232, 226), (196, 32, 38), (118, 52, 150), (228, 196, 42), (128, 128, 128),
              (40, 72, 188), (44, 146, 62))
_LOWER_RGB = ((30, 30, 34), (226, 226, 220), (228, 132, 168), (222, 192, 60), (120, 120, 124), (52, 74, 132),
              (58, 108, 60), (118, 80, 42))
_UPPER_P = (0.22, 0.14, 0.12, 0.08, 0.08, 0.14, 0.13, 0.09)
_LOWER_P = (0.30, 0.08, 0.07, 0.05, 0.16, 0.22, 0.05, 0.07)

# Binary attributes, in the order of the ``attributes`` feature.
ATTRIBUTE_NAMES = (
        *(f"up_{c}" for c in UPPER_COLORS),
        *(f"down_{c}" for c in LOWER_COLORS),
        "short_sleeve", "lower_short", "lower_skirt", "long_coat",
        "backpack", "shoulder_bag", "handbag", "hat", "long_hair",
        "up_stripes", "up_logo", "light_shoes", "glasses", "child",
        "build_slim", "build_heavy", "scarf", "belt",
)
_A = {n: i for i, n in enumerate(ATTRIBUTE_NAMES)}
NUM_ATTRIBUTES = len(ATTRIBUTE_NAMES)

_BUILDS = ("slim", "normal", "heavy")
_LOWER_TYPES = ("trousers", "shorts", "skirt")
MODEL_NAMES = (*(f"{b}_{t}" for b in _BUILDS for t in _LOWER_TYPES), "long_coat")
COLOR_NAMES = UPPER_COLORS

FRONT, BACK, SIDE_LEFT, SIDE_RIGHT = range(4)

# The first words of the seed sequences of each random stream (kept apart so that, e.g., adding an
# image never changes an identity's appearance).
_STREAM_CAMERAS, _STREAM_IDENTITY, _STREAM_PLAN, _STREAM_IMAGE = 11, 13, 17, 19
_SPLIT_CODE = {"train": 1, "val": 2, "query": 3, "gallery": 4}
SPLITS = ("train", "val", "query", "gallery")
_DISTRACTOR_KEY0 = 1_000_000  # appearance keys of distractors (one fresh person each)


@dataclasses.dataclass(eq=False)
class SyntheticConfig(common.ReidConfig):
    """A configuration: sizes and seed. Identity pools are disjoint: train, val and test identities.

    Any field can be changed through :func:`jhash.data.common.make_config`, e.g.
    ``config={"base": "default", "seed": 1}`` (stored as its own config ``default-seed1``).
    """

    image_size: tuple[int, int] = (128, 64)  # (height, width) of the stored images
    num_train_ids: int = 300
    num_val_ids: int = 50
    num_test_ids: int = 200
    num_cameras: int = 6
    train_cams: tuple[int, int] = (2, 4)  # cameras per training identity (inclusive range)
    test_cams: tuple[int, int] = (3, 4)  # cameras per val / test identity
    images_per_cam: tuple[int, int] = (1, 4)  # images per (identity, camera), inclusive range
    queries_per_id: int = 2  # query images per test identity, each from a different camera
    num_distractors: int = 600  # gallery images with pid 0
    num_junk: int = 60  # gallery images with pid -1
    jpeg_quality: int = 90
    seed: int = 0

    def key(self) -> tuple:
        """The fields that determine the data (what caches are keyed on)."""
        return tuple(tuple(v) if isinstance(v, list) else v for v in (getattr(self, n) for n in _DATA_FIELDS))


_DATA_FIELDS = (
    "image_size", "num_train_ids", "num_val_ids", "num_test_ids", "num_cameras", "train_cams", "test_cams",
    "images_per_cam", "queries_per_id", "num_distractors", "num_junk", "jpeg_quality", "seed",
)

CONFIGS: dict[str, SyntheticConfig] = {
    c.name: c for c in (
        SyntheticConfig(
            name="default",
            description="300 train / 50 val / 200 test identities, 6 cameras, 128x64 JPEG.",
        ),
        SyntheticConfig(
            name="tiny", image_size=(32, 16), num_train_ids=8, num_val_ids=3, num_test_ids=4,
            num_cameras=3, train_cams=(2, 3), test_cams=(3, 3), images_per_cam=(1, 2),
            num_distractors=5, num_junk=2, description="For tests: 8 / 3 / 4 identities at 32x16.",
        ),
        SyntheticConfig(
            name="large", image_size=(64, 32), num_distractors=500_000,
            description="The default identities at 64x32 with 500,000 gallery distractors (speed benchmarks).",
        ),
    )
}


def get_config(config: str | SyntheticConfig | None = "default", *, seed: int | None = None) -> SyntheticConfig:
    """A config by name (or as given), optionally with another seed."""
    if config is None:
        config = "default"
    if isinstance(config, str):
        if config not in CONFIGS:
            raise ValueError(f"unknown {NAME} config {config!r}; available: {', '.join(CONFIGS)}")
        config = CONFIGS[config]
    if seed is None or int(seed) == config.seed:
        return config
    return dataclasses.replace(config, name=f"{config.name}-seed{int(seed)}", seed=int(seed))


# ----------------------------------------------------------------------------------------------
# Identities
# ----------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Identity:
    """The appearance of one person and the labels read off it."""

    attributes: np.ndarray  # int32 [NUM_ATTRIBUTES], 0/1
    model: int
    color: int
    upper_rgb: tuple[int, int, int]
    lower_rgb: tuple[int, int, int]
    params: dict  # continuous appearance parameters (see make_identity)


_SKIN = ((236, 200, 170), (214, 168, 130), (176, 124, 88), (120, 82, 56))
_HAIR = ((20, 16, 14), (70, 44, 26), (150, 110, 60), (200, 170, 110), (140, 140, 140))
_LOGO = ((250, 250, 250), (220, 30, 30), (20, 20, 20), (250, 210, 0), (30, 160, 220))
_PACK = ((30, 30, 30), (40, 60, 140), (150, 30, 30), (90, 90, 90), (40, 100, 50))
_BAG = ((60, 40, 25), (25, 25, 25), (190, 170, 140), (160, 40, 90))
_HAT = ((25, 25, 25), (230, 230, 230), (180, 40, 40), (40, 60, 150), (200, 170, 60))
_SCARF = ((200, 40, 40), (40, 40, 160), (230, 200, 60), (240, 240, 240), (100, 60, 140))
_SHOES = ((40, 34, 30), (235, 235, 232))
# Probability of each binary accessory / feature.
_P_ATTR = (("backpack", 0.3), ("shoulder_bag", 0.2), ("handbag", 0.15), ("hat", 0.18), ("long_hair", 0.35),
           ("up_stripes", 0.2), ("up_logo", 0.25), ("light_shoes", 0.35), ("glasses", 0.2), ("child", 0.1),
           ("scarf", 0.12), ("belt", 0.3))


def _rgb(c, scale: float = 1.0, add: float = 0.0) -> tuple[int, int, int]:
    """``c * scale + add`` as a Pillow colour (ints clipped to 0..255)."""
    return tuple(min(255, max(0, int(v * scale + add))) for v in c)


class _Draws:
    """Uniform numbers drawn in one call and handed out one by one (fast, and still reproducible)."""

    def __init__(self, rng: np.random.Generator, n: int):
        self._rng, self._n = rng, n
        self._u = rng.random(n).tolist()
        self._i = 0

    def u(self, lo: float = 0.0, hi: float = 1.0) -> float:
        if self._i == len(self._u):
            self._u.extend(self._rng.random(self._n).tolist())
        v = self._u[self._i]
        self._i += 1
        return lo + (hi - lo) * v

    def pick(self, probs) -> int:
        """An index drawn with the given probabilities (which sum to 1)."""
        v, acc = self.u(), 0.0
        for i, p in enumerate(probs):
            acc += p
            if v < acc:
                return i
        return len(probs) - 1

    def rgb(self, table, amount: float, probs=None) -> tuple[int, int, int]:
        """A colour from ``table`` (uniformly, or with ``probs``) jittered by up to ``amount`` per channel."""
        base = table[self.pick(probs) if probs is not None else int(self.u() * len(table))]
        return _rgb([c + self.u(-amount, amount) for c in base])


def make_identity(seed: int, key: int, *, labels_only: bool = False) -> Identity:
    """The appearance of person ``key`` (a pid, or a distractor's key) under ``seed``.

    ``labels_only``: stop after the labels (``attributes``, ``model``, ``color``; the rest is None).
    """
    r = _Draws(np.random.default_rng([int(seed), _STREAM_IDENTITY, int(key)]), 96)
    attr = np.zeros(NUM_ATTRIBUTES, np.int32)
    up, down = r.pick(_UPPER_P), r.pick(_LOWER_P)
    if down == up and up in (0, 1, 5) and r.u() < 0.5:  # fewer all-black / white / gray outfits
        down = r.pick(_LOWER_P)
    attr[up] = 1
    attr[len(UPPER_COLORS) + down] = 1
    build = r.pick((0.3, 0.45, 0.25))
    coat = r.u() < 0.10
    lower_type = 0 if coat else r.pick((0.6, 0.22, 0.18))
    attr[_A["short_sleeve"]] = (not coat) and r.u() < (0.6 if lower_type == 1 else 0.35)
    attr[_A["lower_short"]] = lower_type == 1
    attr[_A["lower_skirt"]] = lower_type == 2
    attr[_A["long_coat"]] = coat
    attr[_A["build_slim"]] = build == 0
    attr[_A["build_heavy"]] = build == 2
    for name, p in _P_ATTR:
        attr[_A[name]] = r.u() < p
    if attr[_A["long_hair"]] and attr[_A["hat"]] and r.u() < 0.5:
        attr[_A["hat"]] = 0
    model = 9 if coat else build * 3 + lower_type
    if labels_only:
        return Identity(attributes=attr, model=model, color=up, upper_rgb=None, lower_rgb=None, params=None)
    upper_rgb = r.rgb(_UPPER_RGB[up: up + 1], 14)
    params = dict(
        skin=r.rgb(_SKIN, 10), hair=r.rgb(_HAIR, 8, (0.45, 0.25, 0.1, 0.1, 0.1)),
        shoulder=(0.21, 0.25, 0.31)[build] * r.u(0.94, 1.06),
        hip=(0.17, 0.2, 0.26)[build] * r.u(0.94, 1.06),
        head=(0.18 if attr[_A["child"]] else 0.13) * r.u(0.93, 1.07),
        waist=r.u(0.47, 0.53), leg_w=(0.065, 0.075, 0.09)[build],
        stripe_period=r.u(0.035, 0.07), stripe_phase=r.u(),
        stripe_rgb=_rgb(upper_rgb, r.u(0.35, 0.6), r.u(0, 110)),
        logo_rgb=r.rgb(_LOGO, 0), logo_size=r.u(0.05, 0.09), logo_round=r.u() < 0.5,
        pack_rgb=r.rgb(_PACK, 12), bag_rgb=r.rgb(_BAG, 12), hat_rgb=r.rgb(_HAT, 12), scarf_rgb=r.rgb(_SCARF, 10),
        shoe_rgb=r.rgb(_SHOES[attr[_A["light_shoes"]]: attr[_A["light_shoes"]] + 1], 12),
        coat_len=r.u(0.72, 0.8), short_len=r.u(0.62, 0.68), skirt_len=r.u(0.66, 0.76),
        sleeve_short=r.u(0.27, 0.31), bag_side=1 if r.u() < 0.5 else -1, legs=r.u(0.97, 1.03),
    )
    return Identity(attributes=attr, model=model, color=up,
                    upper_rgb=upper_rgb, lower_rgb=r.rgb(_LOWER_RGB[down: down + 1], 14), params=params)


# ----------------------------------------------------------------------------------------------
# Cameras
# ----------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Camera:
    view_p: tuple[float, ...]  # probabilities of FRONT, BACK, SIDE_LEFT, SIDE_RIGHT
    scale: tuple[float, float]  # range of the person's height / image height
    gain: float  # brightness
    cast: np.ndarray  # float32 [3] per-channel multipliers (mean 1)
    contrast: float
    bg_top: np.ndarray  # float32 [3] background colour above the horizon
    bg_bottom: np.ndarray  # float32 [3] ... and below it
    clutter: int  # mean number of clutter shapes
    clutter_rgb: tuple[tuple[int, int, int], ...]  # palette of the clutter and occluders
    resolution: float  # render scale (< 1 blurs)
    noise: float  # sensor noise sigma (0..255 units)
    occlusion: float  # probability of an occluder


_VIEW_PROFILES = (
    (0.70, 0.10, 0.10, 0.10),  # mostly front
    (0.10, 0.70, 0.10, 0.10),  # mostly back
    (0.10, 0.10, 0.70, 0.10),  # side, walking left
    (0.10, 0.10, 0.10, 0.70),  # side, walking right
    (0.40, 0.40, 0.10, 0.10),  # front or back
    (0.25, 0.25, 0.25, 0.25),  # anything
)


@functools.lru_cache(maxsize=64)
def make_cameras(seed: int, num_cameras: int) -> tuple[Camera, ...]:
    """The cameras of a seed: each differs in viewpoint, scale, light, colour cast, background and blur."""
    rng = np.random.default_rng([int(seed), _STREAM_CAMERAS])
    profiles = rng.permutation(len(_VIEW_PROFILES))
    cams = []
    for c in range(num_cameras):
        lo = rng.uniform(0.72, 0.86)
        cast = rng.uniform(0.78, 1.22, 3)
        top = rng.uniform(40, 220, 3)
        cams.append(Camera(
            view_p=_VIEW_PROFILES[profiles[c % len(profiles)]],
            scale=(lo, min(lo + 0.12, 0.97)),
            gain=float(rng.uniform(0.6, 1.25)),
            cast=(cast / cast.mean()).astype(np.float32),
            contrast=float(rng.uniform(0.75, 1.15)),
            bg_top=top.astype(np.float32),
            bg_bottom=np.clip(top * rng.uniform(0.4, 1.0) + rng.uniform(-40, 40, 3), 0, 255).astype(np.float32),
            clutter=int(rng.integers(2, 9)),
            clutter_rgb=tuple(_rgb(c) for c in rng.uniform(20, 235, (4, 3))),
            resolution=float(rng.choice([1.0, 0.8, 0.6, 0.45])),
            noise=float(rng.uniform(2.0, 9.0)),
            occlusion=float(rng.uniform(0.08, 0.3)),
        ))
    return tuple(cams)


# ----------------------------------------------------------------------------------------------
# Rendering
# ----------------------------------------------------------------------------------------------


def _background(cam: Camera, r: _Draws, h: int, w: int) -> Image.Image:
    """Two-tone ground and wall split at a random horizon, plus clutter (boxes and bars)."""
    t = np.linspace(0.0, 1.0, h, dtype=np.float32)[:, None]
    mix = np.clip((t - r.u(0.45, 0.75)) * 6 + 0.5, 0, 1)
    shift = np.array([r.u(-18, 18) for _ in range(3)], np.float32)
    col = cam.bg_top * (1 - mix) + cam.bg_bottom * mix + shift
    img = Image.fromarray(np.clip(col, 0, 255).astype(np.uint8)[:, None, :]).resize((w, h), Image.NEAREST)
    draw = ImageDraw.Draw(img)
    for _ in range(int(r.u(0, 2 * cam.clutter + 1))):
        x0, y0 = r.u(-0.2, 1.0) * w, r.u(-0.1, 0.9) * h
        x1, y1 = x0 + r.u(0.05, 0.6) * w, y0 + r.u(0.03, 0.5) * h
        c = _rgb(cam.clutter_rgb[int(r.u() * len(cam.clutter_rgb))], 1.0, r.u(-30, 30))
        if r.u() < 0.7:
            draw.rectangle((x0, y0, x1, y1), fill=c)
        else:
            draw.line((x0, y0, x1, y1), fill=c, width=max(1, int(w * 0.03)))
    return img


def _trap(cx, y0, y1, w0, w1):
    """A trapezoid centred on cx from y0 (width w0) to y1 (width w1)."""
    return [(cx - w0 / 2, y0), (cx + w0 / 2, y0), (cx + w1 / 2, y1), (cx - w1 / 2, y1)]


def _draw_person(draw: ImageDraw.ImageDraw, ident: Identity, view: int, r: _Draws, cx: float, top: float,
                 hgt: float) -> None:
    """Draws one person of height ``hgt`` pixels, head at ``top``, centred on ``cx``, seen from ``view``."""
    p, a = ident.params, ident.attributes
    up, low, skin, hair = ident.upper_rgb, ident.lower_rgb, p["skin"], p["hair"]
    side = view in (SIDE_LEFT, SIDE_RIGHT)
    d = -1.0 if view == SIDE_LEFT else 1.0  # facing direction on a side view
    wf = 0.58 if side else 1.0  # torso width factor seen from the side

    def Y(v):  # noqa: N802 (person coordinates -> pixels: v from the top, u from the centre line)
        return top + v * hgt

    def U(u):  # noqa: N802
        return u * hgt

    head = p["head"]
    neck = head + 0.01
    waist = p["waist"] * (1.02 if a[_A["child"]] else 1.0)
    sh, hip = p["shoulder"] * wf, p["hip"] * wf
    coat = bool(a[_A["long_coat"]])
    lower_type = 1 if a[_A["lower_short"]] else 2 if a[_A["lower_skirt"]] else 0
    stride = r.u(-1, 1) * (0.09 if side else 0.035)
    swing = r.u(-1, 1) * (0.07 if side else 0.02)
    foot = 0.995 * p["legs"]
    leg_w = p["leg_w"]
    lw = max(1, round(U(0.012)))

    # Backpack seen from the side: drawn first, it sticks out behind the back.
    if side and a[_A["backpack"]]:
        bx = cx - d * U(sh / 2 + 0.045)
        draw.rectangle((bx - U(0.05), Y(neck + 0.03), bx + U(0.05), Y(neck + 0.27)), fill=p["pack_rgb"])
    # Long hair seen from the front hangs behind the shoulders.
    if view == FRONT and a[_A["long_hair"]]:
        draw.rectangle((cx - U(head * 0.48), Y(head * 0.4), cx + U(head * 0.48), Y(neck + 0.14)), fill=hair)

    # Legs (trousers, or skin under shorts and skirts), then shoes.
    for s in (-1.0, 1.0):
        hx = cx if side else cx + s * U(hip / 4)
        fx = hx + s * U(stride)
        knee = (hx + fx) / 2
        draw.polygon([(hx - U(leg_w / 2), Y(waist)), (hx + U(leg_w / 2), Y(waist)),
                      (knee + U(leg_w / 2), Y(0.73)), (fx + U(leg_w * 0.45), Y(foot - 0.035)),
                      (fx - U(leg_w * 0.45), Y(foot - 0.035)), (knee - U(leg_w / 2), Y(0.73))],
                     fill=low if lower_type == 0 else skin)
        toe = d * U(0.03) if side else 0.0
        draw.rectangle((fx - U(leg_w * 0.55) + min(toe, 0), Y(foot - 0.04), fx + U(leg_w * 0.55) + max(toe, 0),
                        Y(foot)), fill=p["shoe_rgb"])

    # Lower garment over the hips.
    if lower_type == 1:  # shorts
        draw.polygon(_trap(cx, Y(waist - 0.01), Y(p["short_len"]), U(hip), U(hip * 1.1)), fill=low)
    elif lower_type == 2:  # skirt
        flare = 1.3 if side else 1.6
        draw.polygon(_trap(cx, Y(waist - 0.01), Y(p["skirt_len"]), U(hip), U(hip * flare)), fill=low)
    else:
        draw.polygon(_trap(cx, Y(waist - 0.01), Y(waist + 0.08), U(hip), U(hip * 1.02)), fill=low)

    def arm(ax, sgn):
        """An arm from the shoulder at ``ax`` (skin, covered by the sleeve); returns the hand's x."""
        hand = ax + sgn * U(swing)
        aw = leg_w * 0.4
        draw.polygon([(ax - U(aw), Y(neck + 0.02)), (ax + U(aw), Y(neck + 0.02)), (hand + U(aw), Y(0.52)),
                      (hand - U(aw), Y(0.52))], fill=skin)
        end = p["sleeve_short"] if a[_A["short_sleeve"]] else 0.5
        sx = ax + (hand - ax) * (end - neck - 0.02) / (0.52 - neck - 0.02)
        aw += 0.005
        draw.polygon([(ax - U(aw), Y(neck + 0.02)), (ax + U(aw), Y(neck + 0.02)), (sx + U(aw), Y(end)),
                      (sx - U(aw), Y(end))], fill=up)
        return hand

    # Arms beside the torso (front / back); on a side view the near arm comes after the torso.
    hands = [] if side else [arm(cx + s * U(sh / 2 + leg_w * 0.35), s) for s in (-1.0, 1.0)]

    # Torso (or coat) with its pattern.
    t_end = p["coat_len"] if coat else waist + 0.02
    bottom = hip * (1.25 if coat else 1.02)
    draw.polygon(_trap(cx, Y(neck), Y(t_end), U(sh), U(bottom)), fill=up)
    if a[_A["up_stripes"]]:
        period = p["stripe_period"]
        v = neck + p["stripe_phase"] * period
        while v < t_end - period / 3:
            v1 = min(v + period / 2, t_end)
            w0 = sh + (bottom - sh) * (v - neck) / (t_end - neck)
            w1 = sh + (bottom - sh) * (v1 - neck) / (t_end - neck)
            draw.polygon(_trap(cx, Y(v), Y(v1), U(w0), U(w1)), fill=p["stripe_rgb"])
            v += period
    if a[_A["belt"]] and not coat:
        draw.rectangle((cx - U(hip * 0.52), Y(waist - 0.005), cx + U(hip * 0.52), Y(waist + 0.015)),
                       fill=(35, 25, 20))
    if view == FRONT and a[_A["up_logo"]]:
        rad, ly = U(p["logo_size"] / 2), Y(neck + 0.12)
        box = (cx - rad, ly - rad, cx + rad, ly + rad)
        (draw.ellipse if p["logo_round"] else draw.rectangle)(box, fill=p["logo_rgb"])

    # Accessories on the torso.
    if a[_A["backpack"]]:
        if view == BACK:
            draw.rectangle((cx - U(sh * 0.36), Y(neck + 0.035), cx + U(sh * 0.36), Y(neck + 0.26)),
                           fill=p["pack_rgb"])
        elif view == FRONT:  # only the straps
            for s in (-1.0, 1.0):
                x = cx + s * U(sh * 0.3)
                draw.line((x, Y(neck), x, Y(neck + 0.2)), fill=_rgb(p["pack_rgb"], 0.7), width=lw)
    if a[_A["shoulder_bag"]]:
        bs = p["bag_side"] * (d if side else 1.0)
        bx = cx + bs * U(0.02 if side else sh * 0.55)
        if view != BACK or r.u() < 0.5:
            draw.line((cx - bs * U(sh * 0.35), Y(neck), bx, Y(waist)), fill=_rgb(p["bag_rgb"], 0.7), width=lw)
        draw.rectangle((bx - U(0.06), Y(waist - 0.04), bx + U(0.06), Y(waist + 0.07)), fill=p["bag_rgb"])
    if a[_A["scarf"]] and view != BACK:
        draw.rectangle((cx - U(sh * 0.4), Y(neck - 0.005), cx + U(sh * 0.4), Y(neck + 0.035)), fill=p["scarf_rgb"])
    if side:
        hands.append(arm(cx + d * U(0.01), d))
    if a[_A["handbag"]]:
        hx = hands[0] if view == SIDE_LEFT or len(hands) == 1 else hands[-1]
        draw.rectangle((hx - U(0.045), Y(0.52), hx + U(0.045), Y(0.6)), fill=p["bag_rgb"])

    # Head: face from the front, hair from the back, half and half from the side.
    hw = head * 0.78
    hx0 = cx + (d * U(0.01) if side else 0.0)
    hbox = (hx0 - U(hw / 2), Y(0.0), hx0 + U(hw / 2), Y(head))
    if view == BACK:
        draw.ellipse(hbox, fill=hair)
        if a[_A["long_hair"]]:
            draw.rectangle((cx - U(hw * 0.55), Y(head * 0.5), cx + U(hw * 0.55), Y(neck + 0.15)), fill=hair)
    else:
        draw.ellipse(hbox, fill=skin)
        draw.chord(hbox, 180, 360, fill=hair)
        if side:
            back = hx0 - d * U(hw / 2)
            draw.rectangle((min(back, hx0), Y(head * 0.3), max(back, hx0), Y(head * 0.75)), fill=hair)
            if a[_A["long_hair"]]:
                tip = back + d * U(hw * 0.4)
                draw.rectangle((min(back, tip), Y(head * 0.5), max(back, tip), Y(neck + 0.14)), fill=hair)
        if view == FRONT:
            ey = Y(head * 0.55)
            for s in (-1.0, 1.0):
                ex = hx0 + s * U(hw * 0.22)
                draw.rectangle((ex - U(0.008), ey - U(0.006), ex + U(0.008), ey + U(0.006)), fill=(20, 20, 20))
            if a[_A["glasses"]]:
                draw.rectangle((hx0 - U(hw * 0.4), ey - U(0.012), hx0 + U(hw * 0.4), ey + U(0.012)),
                               outline=(10, 10, 10), fill=(60, 60, 70), width=1)
    if a[_A["hat"]]:
        draw.rectangle((hx0 - U(hw * 0.55), Y(-0.01), hx0 + U(hw * 0.55), Y(head * 0.35)), fill=p["hat_rgb"])
        brim = U(hw * 0.35) * (d if side else 0.0)
        draw.rectangle((hx0 - U(hw * 0.7) + min(brim, 0), Y(head * 0.3), hx0 + U(hw * 0.7) + max(brim, 0),
                        Y(head * 0.4)), fill=_rgb(p["hat_rgb"], 0.8))


def render(ident: Identity, cam: Camera, rng: np.random.Generator, size: tuple[int, int],
           *, junk: bool = False) -> np.ndarray:
    """One uint8 [H, W, 3] image of ``ident`` seen by ``cam`` (``junk``: a bad detection)."""
    H, W = size  # noqa: N806
    r = _Draws(rng, 160)
    h, w = max(8, round(H * cam.resolution)), max(4, round(W * cam.resolution))
    img = _background(cam, r, h, w)
    draw = ImageDraw.Draw(img)
    view = r.pick(cam.view_p)
    hgt = r.u(*cam.scale) * h
    if not junk:
        cx, top = w * r.u(0.42, 0.58), (h - hgt) * r.u(0.2, 0.8)
    elif r.u() < 0.5:  # a badly placed box: a person cut by the border ...
        cx, top = w * (-0.35 if r.u() < 0.5 else 1.35) + r.u(-0.1, 0.1) * w, r.u(0, 0.2) * h
    else:  # ... or far too close: a fragment of a body
        hgt = h * r.u(2.0, 3.0)
        cx, top = w * r.u(0.2, 0.8), -hgt * r.u(0.25, 0.5)
    _draw_person(draw, ident, view, r, cx, top, hgt)
    if r.u() < cam.occlusion:  # an occluder: a pole, a passer-by or a low object
        c = _rgb(cam.clutter_rgb[int(r.u() * len(cam.clutter_rgb))], r.u(0.5, 1.2))
        kind = int(r.u() * 3)
        if kind == 0:
            x = r.u(0.1, 0.9) * w
            draw.rectangle((x, 0, x + r.u(0.08, 0.2) * w, h), fill=c)
        elif kind == 1:
            x0 = w * (-0.25 if r.u() < 0.5 else 0.7) + r.u(-0.05, 0.05) * w
            draw.ellipse((x0, h * r.u(0.1, 0.4), x0 + w * 0.55, h * 1.3), fill=c)
        else:
            draw.rectangle((-1, h * r.u(0.7, 0.85), w, h), fill=c)
    if (h, w) != (H, W):
        img = img.resize((W, H), Image.BILINEAR)
    # Light: contrast, the camera's gain and colour cast with a per-image change, a vertical shading
    # gradient (one multiplier per row and channel), then sensor noise (a crop of a fixed noise field).
    gain = np.tile(np.float32(cam.gain * r.u(0.88, 1.12)) * cam.cast, W)  # [3W]
    shade = 1.0 + np.float32(r.u(-0.15, 0.15)) * np.linspace(-1, 1, H, dtype=np.float32)  # [H]
    noise = _noise_field(cam.noise, H, W)
    oy, ox = int(r.u() * (H + 1)), int(r.u() * (3 * W + 1))
    arr = np.asarray(img, dtype=np.float32).reshape(H, W * 3)
    arr -= 128.0
    arr *= np.float32(cam.contrast)
    arr += 128.0
    arr *= np.multiply.outer(shade, gain)
    arr += noise[oy: oy + H, ox: ox + 3 * W]
    np.clip(arr, 0, 255, out=arr)
    return arr.astype(np.uint8).reshape(H, W, 3)


@functools.lru_cache(maxsize=32)
def _noise_field(sigma: float, h: int, w: int) -> np.ndarray:
    """A fixed field of Gaussian noise [2h, 6w] (read-only); images add random crops of it."""
    field = np.random.default_rng([_STREAM_IMAGE, h, w]).standard_normal((2 * h, 6 * w), dtype=np.float32)
    field *= np.float32(sigma)
    field.flags.writeable = False
    return field


def encode_jpeg(image: np.ndarray, quality: int = 90) -> bytes:
    """JPEG bytes with fixed encoder settings (baseline, 4:2:0, no optimisation): deterministic."""
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="JPEG", quality=int(quality), subsampling=2, optimize=False,
                                progressive=False)
    return buf.getvalue()


# ----------------------------------------------------------------------------------------------
# Splits: which person, seen by which camera, in each record
# ----------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class SplitPlan:
    """One split's records as arrays (cheap even for 500k distractors)."""

    pid: np.ndarray  # int32
    camid: np.ndarray  # int32, 1-based
    key: np.ndarray  # int64 appearance key (the pid, or a distractor's own key)
    junk: np.ndarray  # bool

    def __len__(self) -> int:
        return len(self.pid)


def _identity_images(rng, pid, num_cameras, cams_range, per_cam_range):
    n = int(rng.integers(cams_range[0], cams_range[1] + 1))
    cams = np.sort(rng.choice(num_cameras, size=min(n, num_cameras), replace=False)) + 1
    return [(pid, int(c)) for c in cams for _ in range(int(rng.integers(per_cam_range[0], per_cam_range[1] + 1)))]


def plan(config: SyntheticConfig) -> dict[str, SplitPlan]:
    """Records of every split (pid, camera, appearance key), in their stored order (sorted by path)."""
    key = config.key()
    if key not in _PLANS:
        if len(_PLANS) >= 8:
            _PLANS.pop(next(iter(_PLANS)))
        _PLANS[key] = _make_plan(config)
    return _PLANS[key]


_PLANS: dict[tuple, dict[str, SplitPlan]] = {}


def _make_plan(c: SyntheticConfig) -> dict[str, SplitPlan]:
    rng = np.random.default_rng([int(c.seed), _STREAM_PLAN])
    total = c.num_train_ids + c.num_val_ids + c.num_test_ids
    if total > 9999:
        raise ValueError(f"{NAME}: at most 9999 identities, asked for {total}")
    if min(c.num_train_ids, c.num_test_ids) < 1 or c.test_cams[0] < 2 or c.num_cameras < c.test_cams[1]:
        raise ValueError(f"{NAME}: config {c.name!r} needs train and test identities, test identities seen "
                         f"by >= 2 cameras and num_cameras >= test_cams[1]")
    pids = rng.choice(np.arange(1, 10000), size=total, replace=False)
    train_ids = np.sort(pids[: c.num_train_ids])
    val_ids = np.sort(pids[c.num_train_ids: c.num_train_ids + c.num_val_ids])
    test_ids = np.sort(pids[c.num_train_ids + c.num_val_ids:])

    def images(ids, cams_range):
        return [r for p in ids for r in _identity_images(rng, p, c.num_cameras, cams_range, c.images_per_cam)]

    def pack(rows, junk=()):
        pid = np.array([r[0] for r in rows], np.int32).reshape(-1)
        cam = np.array([r[1] for r in rows], np.int32).reshape(-1)
        keys = np.where(pid > 0, pid, _DISTRACTOR_KEY0 + np.arange(len(pid))).astype(np.int64)
        arrays = (pid, cam, keys, np.isin(np.arange(len(pid)), junk))
        for a in arrays:
            a.flags.writeable = False  # shared by every source of the config
        return SplitPlan(*arrays)

    train, val = images(train_ids, c.train_cams), images(val_ids, c.test_cams)
    query, gallery = [], []
    for p in test_ids:
        rows = _identity_images(rng, p, c.num_cameras, c.test_cams, c.images_per_cam)
        cams = sorted({cam for _, cam in rows})
        # Queries from at most all-but-one of its cameras, so each keeps a match in another camera.
        qcams = set(rng.choice(cams, size=min(c.queries_per_id, len(cams) - 1), replace=False).tolist())
        for row in rows:  # the first image of each query camera is the query
            if row[1] in qcams:
                qcams.remove(row[1])
                query.append(row)
            else:
                gallery.append(row)
    # The gallery in path order: junk (-1), distractors (0000), then the test identities.
    junk_cams = np.sort(rng.integers(1, c.num_cameras + 1, c.num_junk))
    distractor_cams = np.sort(rng.integers(1, c.num_cameras + 1, c.num_distractors))
    gallery = ([(-1, int(k)) for k in junk_cams] + [(0, int(k)) for k in distractor_cams] + gallery)
    return {"train": pack(train), "val": pack(val), "query": pack(query),
            "gallery": pack(gallery, junk=np.arange(c.num_junk))}


def _path(split: str, pid: int, camid: int, index: int) -> str:
    p = "-1" if pid < 0 else f"{pid:04d}"
    return f"{split}/{p}_c{camid}s1_{index:06d}_00.jpg"


@functools.lru_cache(maxsize=4096)
def _identity_cached(seed: int, key: int) -> Identity:
    return make_identity(seed, key)


def make_record(config: SyntheticConfig, split: str, index: int) -> dict[str, Any]:
    """Record ``index`` of ``split``, as the TFDS builder stores it (image as JPEG bytes, path as str)."""
    sp = plan(config)[split]
    pid, camid, key, junk = int(sp.pid[index]), int(sp.camid[index]), int(sp.key[index]), bool(sp.junk[index])
    # Distractors and junk are seen once: no need to keep their appearance.
    ident = _identity_cached(config.seed, key) if key < _DISTRACTOR_KEY0 else make_identity(config.seed, key)
    cam = make_cameras(config.seed, config.num_cameras)[camid - 1]
    rng = np.random.default_rng([int(config.seed), _STREAM_IMAGE, _SPLIT_CODE[split], int(index)])
    image = render(ident, cam, rng, tuple(config.image_size), junk=junk)
    return {
        "image": encode_jpeg(image, config.jpeg_quality),
        "pid": np.int32(pid),
        "camid": np.int32(camid),
        "path": _path(split, pid, camid, index),
        "attributes": ident.attributes.copy(),
        "model": np.int32(ident.model),
        "color": np.int32(ident.color),
    }


def render_image(config: SyntheticConfig, split: str, index: int) -> bytes:
    """The encoded image of record ``index`` of ``split``."""
    return make_record(config, split, index)["image"]


class SyntheticSource:
    """A lazy random-access source of one split, interchangeable with a TFDS data source.

    Records are rendered on demand (nothing is stored) and equal what :class:`SyntheticReid` writes
    (``path`` as ``bytes``, as TFDS returns ``Text`` features). ``pids`` / ``camids`` come without
    rendering. Picklable, so grain workers can use it. This is the way to use the ``large`` config
    without preparing it: ``SyntheticSource("gallery", "large")``.
    """

    def __init__(self, split: str, config: str | SyntheticConfig | None = "default", *, seed: int | None = None):
        if split not in SPLITS:
            raise ValueError(f"{NAME} has splits {', '.join(SPLITS)}; not {split!r}")
        self.config = get_config(config, seed=seed)
        self.split = split
        self._len = len(plan(self.config)[split])

    def __len__(self) -> int:
        return self._len

    def __getitem__(self, index: int) -> dict[str, Any]:
        index = int(index)
        if not -self._len <= index < self._len:
            raise IndexError(f"{NAME}/{self.config.name}/{self.split}: index {index} out of range ({self._len})")
        rec = make_record(self.config, self.split, index % self._len)
        rec["path"] = rec["path"].encode()
        return rec

    def __getitems__(self, indices: Sequence[int]) -> list[dict[str, Any]]:
        return [self[i] for i in indices]

    def __repr__(self) -> str:
        return f"SyntheticSource(split={self.split!r}, config={self.config.name!r}, len={self._len})"

    @property
    def pids(self) -> np.ndarray:
        return plan(self.config)[self.split].pid

    @property
    def camids(self) -> np.ndarray:
        return plan(self.config)[self.split].camid


def train_augment() -> dict:
    """Training augmentation scaled to synthetic_reid's small images (64 x 32 .. 96 x 48): flip, 3 px of
    padding + random crop, random erasing with probability 0.3 (the pipeline's defaults, 10 px and 0.5, are
    meant for 256 x 128 crops and shift a 32-pixel-wide image by a third). For ``config.input.augment``."""
    return dict(flip_prob=0.5, pad=3, erase_prob=0.3)


def dataset_info(config: str | SyntheticConfig | None = "default", *, seed: int | None = None) -> DatasetInfo:
    """The :class:`DatasetInfo` of a config without preparing it (equal to the prepared dataset's)."""
    c = get_config(config, seed=seed)
    return DatasetInfo(
        name=NAME, num_classes=c.num_train_ids, image_size=tuple(c.image_size), protocol="market",
        num_attributes=NUM_ATTRIBUTES, attribute_names=ATTRIBUTE_NAMES, num_models=len(MODEL_NAMES),
        num_colors=len(COLOR_NAMES), num_train_images=len(plan(c)["train"]),
    )


# ----------------------------------------------------------------------------------------------
# The TFDS builder
# ----------------------------------------------------------------------------------------------


class SyntheticReid(common.ReidBuilder):
    """Procedurally rendered pedestrians seen by several cameras; nothing to download (see module doc)."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "First release."}
    BUILDER_CONFIGS = list(CONFIGS.values())
    DEFAULT_BUILDER_CONFIG_NAME = "default"
    MANUAL_DOWNLOAD_INSTRUCTIONS = "Nothing to download: the images are rendered from the config's seed."
    PROTOCOL = "market"
    ATTRIBUTE_NAMES = ATTRIBUTE_NAMES
    HAS_MODEL = True
    HAS_COLOR = True
    NUM_MODELS = len(MODEL_NAMES)
    NUM_COLORS = len(COLOR_NAMES)
    FINGERPRINT_SOURCE = False  # the images follow from the config's seed
    DESCRIPTION = "Synthetic person ReID: procedurally rendered identities, cameras and attributes."

    @property
    def IMAGE_SIZE(self) -> tuple[int, int]:  # noqa: N802 (the base class's constant, per config here)
        return tuple(self.builder_config.image_size)

    def _list_records(self, dl_manager) -> common.Listing:
        del dl_manager  # nothing to download
        cfg = self.builder_config
        splits = {}
        for split, sp in plan(cfg).items():
            recs = []
            for i in range(len(sp)):
                key = int(sp.key[i])
                ident = (_identity_cached(cfg.seed, key) if key < _DISTRACTOR_KEY0
                         else make_identity(cfg.seed, key, labels_only=True))
                path = _path(split, int(sp.pid[i]), int(sp.camid[i]), i)
                recs.append(common.Record(
                    path=path, pid=int(sp.pid[i]), camid=int(sp.camid[i]),
                    source=functools.partial(render_image, cfg, split, i), attributes=ident.attributes,
                    model=ident.model, color=ident.color, where=f"{NAME}/{cfg.name}/{path}",
                ))
            splits[split] = recs
        return common.Listing(splits=splits, extra={"model_names": list(MODEL_NAMES),
                                                    "color_names": list(COLOR_NAMES)})
