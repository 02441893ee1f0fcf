"""Synthetic Horse-30: procedurally drawn walking horses, written in Horse-10's own on-disk layout.

The same reader serves synthetic and real data. The generator writes a single-animal DeepLabCut project,
``config.yaml`` and ``labeled-data/<horse>/NNNN.png`` with ``CollectedData_synthetic.h5`` and ``.csv`` in
each folder, then Horse-10's extras: one ``TrainTestInfo_shuffle{k}.csv`` per split (`n_splits`) and
``Horsescale.h5``. (The workflow's Figure 2 shows a frame of each horse, `oodpose.data.individuals`.)

Each horse is a filled body, neck and head with four jointed legs whose joints sit at the 22
Horse-10 keypoints, walking in a lateral-sequence gait while the camera pans. Horses differ as
Horse-10's do: coat colour and texture (bay, chestnut, grey, black, brown), socks and blaze,
proportions, size in the frame (nose-to-eye 10-36 px), scene, light, shadows, camera height, and a
handler who walks at the head and partly hides the legs. Labels are exact (keypoints off the frame
are NaN) and everything is deterministic from the seed.

The domain shift: training and out-of-domain horses are different individuals drawn from the same
distribution, as in Horse-10, so an OOD horse brings its own combination of coat and markings,
proportions and size in the frame, scene (fence, trees or barn, its colours and shadow band), light,
camera height and handler's clothes, none of which the network saw on its few training horses.
The gap this gives, measured, is in bench/README.md.
"""

from __future__ import annotations

import math
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw

from oodpose.atomic import atomic_dir
from oodpose.data.labels import Labels, write_project_labels
from oodpose.data.project import write_project_config
from oodpose.data.splits import make_splits, splits_to_official
from oodpose.settings import SyntheticSettings

BODYPARTS = (
    "Nose",
    "Eye",
    "Nearknee",
    "Nearfrontfetlock",
    "Nearfrontfoot",
    "Offknee",
    "Offfrontfetlock",
    "Offfrontfoot",
    "Shoulder",
    "Midshoulder",
    "Elbow",
    "Girth",
    "Wither",
    "Nearhindhock",
    "Nearhindfetlock",
    "Nearhindfoot",
    "Hip",
    "Stifle",
    "Offhindhock",
    "Offhindfetlock",
    "Offhindfoot",
    "Ischium",
)
COATS = {  # body colour, mane/tail colour, lower-leg colour (None = body colour)
    "Bay": ((125, 68, 34), (25, 18, 15), (30, 22, 18)),
    "Chestnut": ((160, 82, 38), (150, 78, 40), None),
    "Grey": ((178, 176, 170), (120, 118, 115), (110, 108, 104)),
    "Black": ((34, 29, 28), (18, 15, 15), None),
    "Brown": ((88, 52, 30), (28, 20, 16), (40, 28, 20)),
}
TASK, DATE = "Horse30", "Jan1"  # DeepLabCut's project name and date, fixed: the data depend on the settings alone
NOSE_EYE = 0.29  # nose-to-eye distance in body lengths; sets the pixel size of a horse
# The horse at rest, in body lengths: x forward, y up from the ground.
REST = {
    "Ischium": (-0.50, 1.12),
    "Hip": (-0.33, 1.30),
    "Stifle": (-0.25, 0.88),
    "Wither": (0.28, 1.36),
    "Midshoulder": (0.36, 1.17),
    "Shoulder": (0.48, 1.01),
    "Elbow": (0.30, 0.80),
    "Girth": (0.17, 0.74),
    "Eye": (0.80, 1.65),
    "Nose": (0.95, 1.40),
}
LEGS = {  # name: (root keypoint, x of the hoof at rest, gait phase offset, front leg?)
    "Nearfront": ("Elbow", 0.33, 0.25, True),
    "Offfront": ("Elbow", 0.36, 0.75, True),
    "Nearhind": ("Stifle", -0.41, 0.0, False),
    "Offhind": ("Stifle", -0.38, 0.5, False),
}


def skeleton() -> list[list[str]]:
    """The bones DeepLabCut draws between labels: each leg from its upper joint down to the foot."""
    chains = [[LEGS[leg][0], middle_joint(leg), f"{leg}fetlock", f"{leg}foot"] for leg in LEGS]
    return [["Nose", "Eye"]] + [[a, b] for chain in chains for a, b in zip(chain, chain[1:])]


def middle_joint(leg: str) -> str:
    """Horse-10's name of a leg's middle joint: Nearknee, Offknee, Nearhindhock, Offhindhock."""
    return leg.replace("front", "") + "knee" if LEGS[leg][3] else leg + "hock"


@dataclass(frozen=True)
class Horse:
    """Everything that makes one individual look like itself."""

    name: str
    seed: int
    coat: str
    socks: tuple[bool, bool, bool, bool]
    blaze: bool
    nose_eye_px: float
    leg_length: float
    neck_length: float
    direction: int  # +1 walks right, -1 left
    ground_y: float  # fraction of the frame height where the hooves touch the ground
    start_x: float  # fraction of the frame width of the horse's centre at frame 0
    drift: float  # px per frame the horse moves in the frame while the camera pans
    pan: float  # px per frame the background moves
    gait_speed: float  # gait cycles per frame
    brightness: float
    backlit: bool
    sky: tuple[int, int, int]
    ground: tuple[int, int, int]
    horizon: float
    scenery: str  # fence, trees or barn
    shadow_band: tuple[float, float]  # shadowed x range of the scene, as fractions of its width
    handler_clothes: tuple[tuple[int, int, int], tuple[int, int, int]]  # trousers, shirt
    n_frames: int


def sample_horses(n: int, total_frames: int, rng: np.random.Generator) -> list[Horse]:
    """Draw `n` individuals whose frame counts add up to `total_frames`."""
    weights = rng.uniform(0.5, 1.5, n)
    counts = np.maximum(1, np.floor(weights / weights.sum() * total_frames).astype(int))
    counts[: total_frames - counts.sum()] += 1 if counts.sum() < total_frames else 0
    coats = list(COATS)
    horses = []
    for i in range(n):
        coat = coats[i % len(coats)] if i < len(coats) else str(rng.choice(coats, p=[0.3, 0.25, 0.15, 0.1, 0.2]))
        nose_eye = float(np.clip(rng.lognormal(math.log(18.0), 0.33), 10.0, 36.0))
        leg_trousers = tuple(int(c) for c in np.array(COATS[str(rng.choice(coats))][0]) * rng.uniform(0.5, 1.0))
        trousers = leg_trousers if rng.random() < 0.4 else tuple(int(c) for c in rng.integers(20, 200, 3))
        horses.append(
            Horse(
                name=f"{coat}Horse{i + 1:02d}",
                seed=int(rng.integers(2**31)),
                coat=coat,
                socks=tuple(bool(s) for s in rng.random(4) < 0.25),
                blaze=bool(rng.random() < 0.35),
                nose_eye_px=nose_eye,
                leg_length=float(rng.uniform(0.9, 1.1)),
                neck_length=float(rng.uniform(0.85, 1.15)),
                direction=int(rng.choice([-1, 1])),
                ground_y=float(rng.uniform(0.78, 0.95)),
                start_x=float(rng.uniform(0.35, 0.65)),
                drift=float(rng.uniform(-0.15, 0.15)),
                pan=float(rng.uniform(0.5, 2.0)),
                gait_speed=float(rng.uniform(0.025, 0.045)),
                brightness=float(rng.uniform(0.65, 1.25)),
                backlit=bool(rng.random() < 0.25),
                sky=tuple(int(c) for c in rng.integers([120, 150, 170], [210, 220, 250])),
                ground=tuple(int(c) for c in rng.integers([70, 80, 40], [170, 160, 110])),
                horizon=float(rng.uniform(0.25, 0.55)),
                scenery=str(rng.choice(["fence", "trees", "barn"])),
                shadow_band=tuple(sorted(rng.uniform(0, 1, 2).tolist())),
                handler_clothes=(trousers, tuple(int(c) for c in rng.integers(20, 230, 3))),
                n_frames=int(counts[i]),
            )
        )
    return horses


def _noise(rng: np.random.Generator, shape: tuple[int, int], cells: tuple[int, int]) -> np.ndarray:
    """Smooth value noise in [0, 1]: a coarse random grid upsampled bilinearly."""
    grid = Image.fromarray((rng.random(cells) * 255).astype(np.uint8))
    return np.asarray(grid.resize((shape[1], shape[0]), Image.BILINEAR), dtype=np.float32) / 255


def render_scene(horse: Horse, size: tuple[int, int]) -> np.ndarray:
    """The horse's scene, wider than the frame so the camera can pan: float32 (H, 3W, 3) in [0, 255]."""
    width, height = size
    rng = np.random.default_rng([horse.seed, 1])
    scene_w = 3 * width
    horizon = int(horse.horizon * height)
    image = Image.new("RGB", (scene_w, height))
    draw = ImageDraw.Draw(image)
    for y in range(horizon):
        draw.line([(0, y), (scene_w, y)], fill=tuple(int(c * (0.8 + 0.2 * y / max(horizon, 1))) for c in horse.sky))
    draw.rectangle([0, horizon, scene_w, height], fill=horse.ground)
    if horse.scenery == "trees":
        for x in rng.uniform(0, scene_w, 14):
            r = rng.uniform(0.08, 0.2) * height
            green = tuple(int(c) for c in rng.integers([20, 50, 15], [60, 110, 50]))
            draw.ellipse([x - r, horizon - 1.8 * r, x + r, horizon + 0.2 * r], fill=green)
    elif horse.scenery == "barn":
        for x in rng.uniform(0, scene_w, 3):
            w, h = rng.uniform(0.5, 1.0) * height, rng.uniform(0.3, 0.5) * height
            wall = tuple(int(c) for c in rng.integers([90, 30, 20], [200, 120, 100]))
            draw.rectangle([x, horizon - h, x + w, horizon + 2], fill=wall)
            draw.polygon(
                [(x - 4, horizon - h), (x + w / 2, horizon - 1.4 * h), (x + w + 4, horizon - h)], fill=(60, 55, 55)
            )
    rail = tuple(int(c) for c in rng.integers(150, 250, 3))
    if horse.scenery == "fence":
        for k in range(2):
            y = horizon + (k + 1) * 0.06 * height
            draw.line([(0, y), (scene_w, y)], fill=rail, width=2)
        for x in np.arange(0, scene_w, rng.uniform(30, 60)):
            draw.line([(x, horizon), (x, horizon + 0.16 * height)], fill=rail, width=3)
    scene = np.asarray(image, dtype=np.float32)
    texture = 0.8 + 0.4 * _noise(rng, (height, scene_w), (height // 6, scene_w // 6))
    scene = scene * texture[..., None]
    gradient = np.linspace(0.85, 1.15, scene_w, dtype=np.float32)[None, :, None]
    scene = scene * (gradient if rng.random() < 0.5 else gradient[:, ::-1])
    lo, hi = (int(f * scene_w) for f in horse.shadow_band)
    scene[:, lo:hi] *= 0.55
    return scene


def pose(horse: Horse, t: int) -> dict[str, np.ndarray]:
    """The 22 keypoints (and the drawing's helper points) at frame `t`, in body lengths."""
    body_phase = 2 * math.pi * horse.gait_speed * t
    bob = 0.012 * math.sin(2 * body_phase)
    lift = horse.leg_length - 1.0
    points = {k: np.array([x, y + bob + lift]) for k, (x, y) in REST.items()}
    neck = horse.neck_length
    nod = 0.03 * math.sin(2 * body_phase + 1.0)
    base = points["Wither"] + np.array([0.1, -0.05])
    for k in ("Eye", "Nose"):
        points[k] = base + (points[k] - base) * neck + np.array([0, nod])
    points["Poll"] = base + (np.array([0.72, 1.76 + bob + lift]) - base) * neck + np.array([0, nod])
    points["Throat"] = base + (np.array([0.66, 1.50 + bob + lift]) - base) * neck + np.array([0, nod])
    for leg, (root, hoof_x, offset, front) in LEGS.items():
        phase = (horse.gait_speed * t + offset) % 1.0
        stride, stance = 0.17, 0.65
        if phase < stance:
            foot = np.array([hoof_x + stride - 2 * stride * phase / stance, 0.0])
            swing = 0.0
        else:
            tau = (phase - stance) / (1 - stance)
            foot = np.array([hoof_x - stride + 2 * stride * (1 - math.cos(math.pi * tau)) / 2, 0.0])
            swing = math.sin(math.pi * tau)
            foot[1] = 0.13 * swing
        fetlock = foot + np.array([-0.03 * swing - 0.015, 0.13 - 0.03 * swing])
        top = points[root]
        bend = np.array([0.07 * swing + 0.01, 0.0]) if front else np.array([-0.09 - 0.03 * swing, 0.0])
        middle = top + (fetlock - top) * (0.5 if front else 0.55) + bend
        points[middle_joint(leg)] = middle
        points[f"{leg}fetlock"] = fetlock
        points[f"{leg}foot"] = foot
    return points


def frame_geometry(horse: Horse, t: int, size: tuple[int, int]) -> tuple[float, float, float]:
    """Pixels per body length, and the image position of the body's ground point at frame `t`."""
    width, height = size
    unit = horse.nose_eye_px / NOSE_EYE * (1 + 0.05 * math.sin(2 * math.pi * t / 400))
    cx = width * horse.start_x + horse.drift * t
    return unit, cx, height * horse.ground_y


def shade(colour: tuple, factor: float) -> tuple:
    return tuple(int(min(255, c * factor)) for c in colour)


class Painter:
    """The horse's colours and its mask, drawn together; widths in body lengths (`unit` pixels each), points as
    bodypart names (`px`) or pixel positions."""

    def __init__(self, size: tuple[int, int], unit: float, px: dict):
        self.paint, self.mask = Image.new("RGB", size), Image.new("L", size, 0)
        self.draws = ((ImageDraw.Draw(self.paint), None), (ImageDraw.Draw(self.mask), 255))
        self.unit, self.px = unit, px

    def line(self, a, b, width_bl: float, colour) -> None:
        w = max(1, int(round(width_bl * self.unit)))
        a, b = tuple(map(float, a)), tuple(map(float, b))
        for d, mask_colour in self.draws:
            c = colour if mask_colour is None else mask_colour
            d.line([a, b], fill=c, width=w)
            r = w / 2
            for p in (a, b):
                d.ellipse([p[0] - r, p[1] - r, p[0] + r, p[1] + r], fill=c)

    def polygon(self, names_or_points, colour) -> None:
        pts = [tuple(map(float, self.px[p] if isinstance(p, str) else p)) for p in names_or_points]
        for d, mask_colour in self.draws:
            d.polygon(pts, fill=colour if mask_colour is None else mask_colour)


def draw_leg(painter: Painter, horse: Horse, name: str, near: bool) -> None:
    """One leg, the far ones darker; a white sock below the fetlock where the horse has one."""
    body, _, points_colour = COATS[horse.coat]
    legs_colour, factor, px = points_colour or body, 1.0 if near else 0.72, painter.px
    root, middle = px[LEGS[name][0]], px[middle_joint(name)]
    fetlock, foot = px[f"{name}fetlock"], px[f"{name}foot"]
    painter.line(root, middle, 0.11, shade(body, factor))
    painter.line(middle, fetlock, 0.06, shade(legs_colour, factor))
    sock = horse.socks[list(LEGS).index(name)]
    painter.line(fetlock, foot, 0.055, shade((235, 232, 225) if sock else legs_colour, factor))
    hoof = (foot[0] + horse.direction * 0.02 * painter.unit, foot[1])
    painter.line(foot, hoof, 0.05, shade((45, 40, 38), factor))


TRUNK = [
    (-0.42, 1.34),
    "Hip",
    (0.0, 1.27),
    (0.24, 1.40),
    "Midshoulder",
    (0.53, 1.04),
    (0.47, 0.92),
    "Elbow",
    (0.16, 0.70),
    (-0.12, 0.71),
    (-0.28, 0.82),
    (-0.53, 0.96),
    (-0.54, 1.14),
]


def draw_horse(painter: Painter, horse: Horse, points: dict, cx: float, gy: float) -> None:
    """The far legs, tail, trunk, neck, head, mane and blaze, then the near legs and the eye."""
    body, mane, _ = COATS[horse.coat]
    px, unit = painter.px, painter.unit

    def rel(x, y):  # a point of the body outline, in body lengths from the horse's centre, moving with the wither
        return (cx + horse.direction * x * unit, gy - (y + points["Wither"][1] - REST["Wither"][1]) * unit)

    draw_leg(painter, horse, "Offhind", near=False)
    draw_leg(painter, horse, "Offfront", near=False)
    painter.line(rel(-0.52, 1.24), rel(-0.62, 0.75), 0.07, mane)  # the tail
    painter.polygon([p if isinstance(p, str) else rel(*p) for p in TRUNK], body)
    painter.polygon([rel(0.22, 1.40), px["Poll"], px["Throat"], rel(0.52, 1.02), "Midshoulder"], body)
    n_vec = np.subtract(px["Nose"], px["Eye"])
    n_perp = np.array([-n_vec[1], n_vec[0]]) * horse.direction
    nose_tip = np.add(px["Nose"], 0.15 * n_vec)
    head = [
        np.add(px["Poll"], -0.25 * n_perp),
        np.add(px["Eye"], -0.35 * n_perp),
        nose_tip,
        np.add(nose_tip, 0.45 * n_perp),
        np.add(px["Nose"], 0.55 * n_perp),
        px["Throat"],
    ]
    painter.polygon(head, body)
    painter.line(rel(0.24, 1.42), px["Poll"], 0.05, mane)
    if horse.blaze:
        painter.line(np.add(px["Eye"], -0.1 * n_perp), np.add(px["Nose"], 0.05 * n_perp), 0.035, (238, 235, 228))
    draw_leg(painter, horse, "Nearhind", near=True)
    draw_leg(painter, horse, "Nearfront", near=True)
    eye_r, (ex, ey) = max(1.0, 0.012 * unit), px["Eye"]
    painter.draws[0][0].ellipse([ex - eye_r, ey - eye_r, ex + eye_r, ey + eye_r], fill=(12, 10, 10))


def render_frame(horse: Horse, t: int, scene: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Frame `t` of a horse as uint8 (H, W, 3) and its (22, 2) keypoints in pixels (NaN off-frame)."""
    width, height = size
    unit, cx, gy = frame_geometry(horse, t, size)
    points = pose(horse, t)
    px = {k: (cx + horse.direction * v[0] * unit, gy - v[1] * unit) for k, v in points.items()}
    offset = int(horse.pan * t) % (scene.shape[1] - width)
    frame = scene[:, offset : offset + width].copy()
    # the horse's shadow on the ground, stronger in direct sunlight
    ground = Image.new("L", size, 0)
    ImageDraw.Draw(ground).ellipse([cx - 0.6 * unit, gy - 0.05 * unit, cx + 0.6 * unit, gy + 0.06 * unit], fill=255)
    frame *= 1 - (0.15 if horse.backlit else 0.4) * (np.asarray(ground, np.float32)[..., None] / 255)
    painter = Painter(size, unit, px)
    draw_horse(painter, horse, points, cx, gy)
    rng = np.random.default_rng([horse.seed, 2, t // 50])
    coat = np.asarray(painter.paint, dtype=np.float32) * (0.85 + 0.3 * _noise(rng, (height, width), (6, 10)))[..., None]
    alpha = np.asarray(painter.mask, dtype=np.float32)[..., None] / 255
    light = horse.brightness * (0.6 if horse.backlit else 1.0)
    frame = frame * (1 - alpha) + coat * light * alpha
    frame = draw_handler(frame, horse, t, px, unit, cx, gy)
    xy = np.array([px[b] for b in BODYPARTS], dtype=np.float32)
    outside = (xy[:, 0] < 0) | (xy[:, 0] >= width) | (xy[:, 1] < 0) | (xy[:, 1] >= height)
    xy[outside] = np.nan
    return np.clip(frame, 0, 255).astype(np.uint8), xy


def draw_handler(
    frame: np.ndarray, horse: Horse, t: int, px: dict, unit: float, cx: float, ground_y: float
) -> np.ndarray:
    """The handler walking at the horse's head, between camera and horse, hiding part of the legs."""
    layer = Image.fromarray(np.clip(frame, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(layer)
    trousers, shirt = horse.handler_clothes
    foot_y = ground_y + 0.04 * unit
    x = cx + horse.direction * 0.6 * unit
    hip_y, neck_y = foot_y - 0.55 * unit, foot_y - 0.95 * unit
    w = max(2, int(0.07 * unit))
    step = 0.08 * unit * math.sin(2 * math.pi * horse.gait_speed * t)
    draw.line([(x - step, foot_y), (x, hip_y)], fill=trousers, width=w)
    draw.line([(x + step, foot_y), (x, hip_y)], fill=trousers, width=w)
    draw.rectangle([x - 0.09 * unit, neck_y, x + 0.09 * unit, hip_y], fill=shirt)
    draw.line([(x, neck_y + 0.05 * unit), px["Throat"]], fill=shirt, width=max(1, w // 2))
    r = 0.07 * unit
    draw.ellipse([x - r, neck_y - 2 * r, x + r, neck_y], fill=(200, 160, 130))
    return np.asarray(layer, dtype=np.float32)


def _render_horse(args) -> tuple[str, np.ndarray, float]:
    horse, folder, size = args
    scene = render_scene(horse, size)
    keypoints = np.empty((horse.n_frames, len(BODYPARTS), 2), dtype=np.float32)
    nose_eye = np.empty(horse.n_frames)
    for t in range(horse.n_frames):
        image, keypoints[t] = render_frame(horse, t, scene, size)
        Image.fromarray(image).save(folder / f"{t:04d}.png", compress_level=1)
        unit = frame_geometry(horse, t, size)[0]
        p = pose(horse, t)
        nose_eye[t] = np.linalg.norm(p["Nose"] - p["Eye"]) * unit
    return horse.name, keypoints, float(np.median(nose_eye))


def generate(out: str | Path, settings: SyntheticSettings | None = None, workers: int = 2) -> Path:
    """Write a synthetic Horse-30 to `out` (atomically) and return it."""
    out, s = Path(out), settings or SyntheticSettings()
    size = s.size
    horses = sample_horses(s.n_individuals, s.n_frames, np.random.default_rng(s.seed))
    with atomic_dir(out, made_by="synthesize") as tmp:
        jobs = []
        for horse in horses:
            folder = tmp / "labeled-data" / horse.name
            folder.mkdir(parents=True)
            jobs.append((horse, folder, size))
        with ProcessPoolExecutor(max_workers=workers) as pool:
            results = list(pool.map(_render_horse, jobs))
        frames = pd.DataFrame(
            [
                (f"labeled-data/{h.name}/{t:04d}.png", h.name, size[0], size[1])
                for h in horses
                for t in range(h.n_frames)
            ],
            columns=["frame", "individual", "width", "height"],
        )
        labels = Labels(frames, np.concatenate([r[1] for r in results]), BODYPARTS, "synthetic")
        folders = write_project_labels(labels, tmp)
        write_project_config(tmp, out.resolve(), TASK, labels.scorer, DATE, list(BODYPARTS), folders, size, skeleton())
        scale = frames["individual"].map({name: s for name, _, s in results})
        pd.DataFrame({"scale": scale.to_numpy()}, index=frames["frame"].to_list()).to_hdf(
            tmp / "Horsescale.h5", key="df_with_missing", mode="w"
        )
        splits = make_splits(labels, s.n_splits, min(s.n_train_individuals, s.n_individuals), s.seed)
        splits_to_official(splits, tmp)
    return out
