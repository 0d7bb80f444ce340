"""Seeded benchmark protocols. Each yields :class:`EpisodeSpec` items that fully describe an episode
(object, goal, start pose relative to the goal, background); a method turns a spec into an episode config.

- ``accuracy18``: the paper's Table I: 3 objects x 2 goal poses x 3 start poses, start offsets drawn around
  55 +- 12 mm and 8.7 +- 3.4 deg, cluttered background.
- ``distance-sweep``: the paper's Fig. 8: start distance batches 0-1, ..., 5-6 cm, rotations uniform within
  per-object ranges about x, y, z, N episodes per batch and object, once on a background similar to the
  target render's and once on a dissimilar cluttered one.
- ``wide``: beyond the paper: up to 15 cm and 30 deg of tilt, with any in-plane rotation (up to 180 deg).
- ``perturb``: accuracy18-like starts, each with one thing happening during the episode (issue 11): an object
  passing in front of 30-50 % of the target for 1 s, the lights changing, motion blur growing with the camera's
  speed, a look-alike copy of the target beside it (:data:`PERTURBATIONS`).
- ``parts``: user-like parts (issue 13): the hard parts (a sheet-metal strip, a smooth housing, a cylinder with
  one flat, a shiny clamp), a 1.5 cm part seen from 10 cm, a 40 cm part and a part whose origin is 0.3 m from its
  geometry (:data:`PARTS`), framed goals, starts scaled to the goal distance, on busy photos and clutter.
- ``tiny``: a few short episodes for tests and smoke runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..geometry import make_pose, so3_exp

# The paper's per-object rotation ranges (deg about x, y, z) of its grasping experiment.
PAPER_ROTATION_RANGES_DEG = ((8.0, 6.0, 3.0), (6.0, 6.0, 4.0), (8.0, 10.0, 8.0))
GOAL_POSES = (  # (distance m, azimuth deg, elevation deg, roll deg): two goal poses per object, as G1, G2
    (0.22, 30.0, 60.0, 0.0),
    (0.20, -60.0, 50.0, 15.0),
)


@dataclass(frozen=True)
class EpisodeSpec:
    """One episode of a protocol. ``object`` is a built-in name or a mesh path; ``background`` a name of
    :data:`dfbvs.bench.methods.BACKGROUNDS` (``cluttered``, ``similar``, ``clean``) or an image path;
    ``T_goal_start`` the start pose in the goal camera frame."""

    episode_id: str
    object: str
    goal: tuple[float | None, float, float, float]  # distance None: framed (the part fills the goal view)
    T_goal_start: tuple[tuple[float, ...], ...]
    background: str
    batch: str
    seed: int
    overrides: tuple[str, ...] = ()  # config overrides of this episode (``--set`` syntax), after the method's


def is_mesh_path(name: str) -> bool:
    """Whether a spec's ``object`` is a mesh file (a path) rather than a built-in name."""
    return "/" in name or "." in name


def _as_tuple(T: np.ndarray) -> tuple[tuple[float, ...], ...]:
    return tuple(tuple(float(x) for x in row) for row in T)


def _random_unit(rng: np.random.Generator) -> np.ndarray:
    d = rng.normal(size=3)
    return d / np.linalg.norm(d)


def start_from_offsets(rng: np.random.Generator, distance_m: float, rotvec_rad: np.ndarray) -> np.ndarray:
    """``T_goal_start``: a translation of ``distance_m`` in a random direction, then ``rotvec_rad``.
    The translation is kept mostly lateral/axial so the object stays in view."""
    return make_pose(so3_exp(rotvec_rad), _random_unit(rng) * distance_m)


def accuracy18(objects: list[str], backgrounds: list[str] | None = None, seed: int = 0) -> list[EpisodeSpec]:
    rng = np.random.default_rng([seed, 18])
    bg = (backgrounds or ["cluttered"])
    specs = []
    for oi, obj in enumerate(objects):
        for gi, goal in enumerate(GOAL_POSES):
            for si in range(3):
                dist_m = float(np.clip(rng.normal(55.0, 12.2), 20.0, 90.0)) * 1e-3
                angle = np.deg2rad(float(np.clip(rng.normal(8.7, 3.4), 2.0, 16.0)))
                T = start_from_offsets(rng, dist_m, _random_unit(rng) * angle)
                specs.append(EpisodeSpec(f"{_short(obj)}-G{gi + 1}-T{si + 1}", obj, goal, _as_tuple(T),
                                         bg[(oi + gi + si) % len(bg)], "all", int(rng.integers(1 << 30))))
    return specs


def distance_sweep(objects: list[str], episodes_per_batch: int = 8, backgrounds: list[str] | None = None,
                   seed: int = 0) -> list[EpisodeSpec]:
    rng = np.random.default_rng([seed, 8])
    specs = []
    for oi, obj in enumerate(objects):
        ranges = np.deg2rad(PAPER_ROTATION_RANGES_DEG[oi % len(PAPER_ROTATION_RANGES_DEG)])
        for b in range(6):
            for k in range(episodes_per_batch):
                dist_m = rng.uniform(b, b + 1) * 1e-2
                rot = rng.uniform(-1, 1, 3) * ranges  # about the goal camera's x, y, z
                T = _as_tuple(start_from_offsets(rng, dist_m, rot))
                seed_k = int(rng.integers(1 << 30))
                for bg in (backgrounds or ["similar", "cluttered"]):  # identical starts on each background
                    specs.append(EpisodeSpec(f"{_short(obj)}-{_short(bg)}-d{b}-{k}", obj, GOAL_POSES[k % 2], T,
                                             bg, f"{b}-{b + 1} cm", seed_k))
    return specs


def wide(objects: list[str], episodes_per_object: int = 12, backgrounds: list[str] | None = None,
         seed: int = 0, max_inplane_deg: float = 180.0) -> list[EpisodeSpec]:
    """Starts 2-15 cm from the goal, tilted up to 30 deg, rolled in-plane uniformly within +-``max_inplane_deg``
    (180: any roll; the first measure used 90), redrawn until the object's centre is in the start view
    (:func:`centre_in_view`: a start that does not see the object is not a servoing problem)."""
    rng = np.random.default_rng([seed, 15])
    bg = backgrounds or ["cluttered"]
    specs = []
    for obj in objects:
        for k in range(episodes_per_object):
            goal = GOAL_POSES[k % len(GOAL_POSES)]
            for _ in range(1000):
                dist_m = rng.uniform(0.02, 0.15)
                tilt = _random_unit(rng) * np.array([1.0, 1.0, 0.0])
                tilt = tilt / max(np.linalg.norm(tilt), 1e-9) * np.deg2rad(rng.uniform(0, 30))
                inplane = np.deg2rad(rng.uniform(-max_inplane_deg, max_inplane_deg))
                T = start_from_offsets(rng, dist_m, tilt + np.array([0.0, 0.0, inplane]))
                if centre_in_view(T, goal[0]):
                    break
            specs.append(EpisodeSpec(f"{_short(obj)}-wide-{k}", obj, goal, _as_tuple(T), bg[k % len(bg)],
                                     f"{int(dist_m * 100) // 5 * 5}-{int(dist_m * 100) // 5 * 5 + 5} cm",
                                     int(rng.integers(1 << 30))))
    return specs


def centre_in_view(T_goal_start: np.ndarray, goal_distance_m: float, margin_px: float = 80.0) -> bool:
    """Whether the object's centre (on the goal camera's axis at ``goal_distance_m``: every goal looks at it)
    projects into the episodes' 640x480 camera ``margin_px`` inside the border, in front of it."""
    from ..camera import Camera
    from ..geometry import inverse, transform_points

    camera = Camera.default().rescaled(640, 480)
    p = transform_points(inverse(np.asarray(T_goal_start, dtype=np.float64)),
                         np.array([[0.0, 0.0, goal_distance_m]]))[0]
    return bool(p[2] > 0.05 and camera.in_image(camera.project(p[None]), margin_px)[0])


#: The perturbations of the ``perturb`` protocol (config overrides; times in simulated s from the episode's start:
#: mid-episode for the camera-rate servo, which reaches the goal in ~3 s, early for the 10 Hz per-frame loop).
PERTURBATIONS: dict[str, tuple[str, ...]] = {
    # a plate 0.6 x the object's size slides across its view at half the goal distance: 30-50 % of the object
    "occlusion": ("occlusion.start_s=1.0", "occlusion.duration_s=1.0", "occlusion.size=0.6"),
    "light": ("light_change.start_s=1.0", "light_change.rotate_deg=70", "light_change.intensity_gain=0.6",
              "light_change.ambient_gain=0.8"),
    "blur": ("motion_blur.exposure_s=0.03",),
    "lookalike": ("scene.lookalikes=1",),
}


def perturb(objects: list[str], episodes_per_object: int = 2, backgrounds: list[str] | None = None,
            seed: int = 0) -> list[EpisodeSpec]:
    """Every perturbation of :data:`PERTURBATIONS` on ``episodes_per_object`` accuracy18-like starts per object
    (55 +- 12 mm, 8.7 +- 3.4 deg; the same starts for every perturbation), redrawn until the object's centre is in
    the start view (:func:`centre_in_view`; the first measure, before this, lost one start that never saw the
    object)."""
    rng = np.random.default_rng([seed, 11])
    bg = backgrounds or ["cluttered"]
    specs = []
    for obj in objects:
        for k in range(episodes_per_object):
            goal = GOAL_POSES[k % len(GOAL_POSES)]
            for _ in range(1000):  # a start that does not see the object tests acquisition, not a perturbation
                dist_m = float(np.clip(rng.normal(55.0, 12.2), 20.0, 90.0)) * 1e-3
                angle = np.deg2rad(float(np.clip(rng.normal(8.7, 3.4), 2.0, 16.0)))
                T_start = start_from_offsets(rng, dist_m, _random_unit(rng) * angle)
                if centre_in_view(T_start, goal[0]):
                    break
            T = _as_tuple(T_start)
            episode_seed = int(rng.integers(1 << 30))
            for name, overrides in PERTURBATIONS.items():
                if name == "lookalike":  # behind the object as the goal sees it: the top of the view (a framed
                    # object fills most of it; the copy shows 0-7 % of the goal image, more from the start poses)
                    overrides = (*overrides, f"scene.lookalike_azimuth_deg={goal[1] + 180.0:g}")
                specs.append(EpisodeSpec(f"{_short(obj)}-{name}-{k}", obj, goal, T, bg[k % len(bg)], name,
                                         episode_seed, overrides))
    return specs


@dataclass(frozen=True)
class Part:
    """A part of the ``parts`` protocol: a built-in ``object`` (or mesh path) scaled by ``scale`` and reframed with
    its origin at ``origin_m`` of the scaled part (:func:`dfbvs.render.mesh.reframed`), its goal at
    ``goal_distance_m`` (None: framed, the distance at which it fills the goal's ``fill_ratio``), with the config
    ``overrides`` of its episodes (e.g. a shiny material)."""

    label: str
    object: str
    scale: float = 1.0
    origin_m: tuple[float, float, float] = (0.0, 0.0, 0.0)
    goal_distance_m: float | None = None
    overrides: tuple[str, ...] = ()


#: The ``parts`` protocol's parts: hard for features, and the sizes and origins of users' CAD parts.
PARTS: tuple[Part, ...] = (
    Part("sheet", "sheet"),  # flat sheet metal, few holes: its keypoints lose to a busy table
    Part("housing", "housing"),  # smooth, rounded: a slot and the silhouette
    Part("shaft", "shaft"),  # a plain cylinder with one flat
    Part("shiny", "clamp", overrides=("scene.object_specular_gain=3.6", "scene.object_shininess=120")),
    Part("tiny", "connector", scale=0.25, origin_m=(0.004, -0.003, -0.002), goal_distance_m=0.10),  # 15 mm at 10 cm
    Part("big", "bracket", scale=4.0, origin_m=(-0.18, 0.08, -0.11)),  # 40 cm, origin near a corner
    Part("offset", "connector", origin_m=(0.3, 0.0, 0.0)),  # origin 0.3 m away from the geometry
)


def part_goal_distance_m(part: Part, fill_ratio: float = 0.9, mesh_unit: str = "m") -> float:
    """The goal distance of ``part`` (m): its own, or the framing distance of the reframed mesh (a file in
    ``mesh_unit``) on the episodes' 640x480 camera at ``fill_ratio`` (GoalConfig's default)."""
    if part.goal_distance_m is not None:
        return part.goal_distance_m
    from ..camera import Camera
    from ..goal import bounding_radius_m, framing_distance_m, object_center_m
    from ..render import load_builtin, load_mesh
    from ..render.mesh import reframed

    mesh = load_mesh(part.object, unit=mesh_unit) if is_mesh_path(part.object) else load_builtin(part.object)
    mesh = reframed(mesh, part.scale, part.origin_m)
    return framing_distance_m(bounding_radius_m(mesh, object_center_m(mesh)), Camera.default().rescaled(640, 480),
                              fill_ratio)


def parts(objects: list[str], episodes_per_object: int = 3, backgrounds: list[str] | None = None,
          seed: int = 0, mesh_unit: str = "m") -> list[EpisodeSpec]:
    """``episodes_per_object`` starts for each of :data:`PARTS` (or, when ``objects`` holds mesh paths, for each
    user mesh, framed), accuracy18's offsets (55 +- 12 mm, 8.7 +- 3.4 deg) with the translation scaled by the goal
    distance over the 0.22 m of accuracy18, redrawn until the part's centre is in view; backgrounds alternate a
    busy photo (gravel, grass, bricks) and the cluttered workbench, photo first."""
    rng = np.random.default_rng([seed, 13])
    paths = [o for o in objects if is_mesh_path(o)]
    chosen = [Part(_short(p), p) for p in paths] if paths else list(PARTS)
    bg = backgrounds or ["photo", "cluttered"]
    specs = []
    for part in chosen:
        distance_m = part_goal_distance_m(part, mesh_unit=mesh_unit)
        for k in range(episodes_per_object):
            goal = GOAL_POSES[k % len(GOAL_POSES)]
            for _ in range(1000):
                dist_m = float(np.clip(rng.normal(55.0, 12.2), 20.0, 90.0)) * 1e-3 * distance_m / 0.22
                angle = np.deg2rad(float(np.clip(rng.normal(8.7, 3.4), 2.0, 16.0)))
                T = start_from_offsets(rng, dist_m, _random_unit(rng) * angle)
                if centre_in_view(T, distance_m):
                    break
            # a far goal (a large part) scales the ball whose leaving counts as diverged (0.25 m at 0.22 m)
            ball = () if distance_m <= 0.22 else (f"max_distance_from_goal_m={0.25 * distance_m / 0.22:.3f}",)
            overrides = (*ball, *(() if part.scale == 1.0 else (f"mesh_scale={part.scale:g}",)),
                         *(() if not any(part.origin_m) else (f"mesh_origin_m={list(part.origin_m)}",)),
                         *part.overrides)
            specs.append(EpisodeSpec(f"{part.label}-P{k + 1}", part.object,
                                     (part.goal_distance_m, *goal[1:]),
                                     _as_tuple(T), bg[k % len(bg)], part.label, int(rng.integers(1 << 30)),
                                     overrides))
    return specs


def tiny(objects: list[str], backgrounds: list[str] | None = None, seed: int = 0) -> list[EpisodeSpec]:
    """Small offsets (1-2 cm, 2 deg): quick episodes for tests."""
    rng = np.random.default_rng([seed, 1])
    specs = []
    for obj in objects[:1]:
        for k, bg in enumerate(backgrounds or ["similar", "cluttered"]):
            T = start_from_offsets(rng, 0.01 + 0.005 * k, _random_unit(rng) * np.deg2rad(2.0))
            specs.append(EpisodeSpec(f"{_short(obj)}-tiny-{k}", obj, GOAL_POSES[0], _as_tuple(T), bg, "tiny",
                                     int(rng.integers(1 << 30))))
    return specs


PROTOCOLS: dict[str, Callable[..., list[EpisodeSpec]]] = {
    "accuracy18": accuracy18, "distance-sweep": distance_sweep, "wide": wide, "perturb": perturb, "parts": parts,
    "tiny": tiny}


def make_protocol(name: str, objects: list[str], backgrounds: list[str] | None = None, seed: int = 0,
                  **options) -> list[EpisodeSpec]:
    if name not in PROTOCOLS:
        raise ValueError(f"unknown protocol {name!r}; available: {sorted(PROTOCOLS)}")
    if not objects:
        raise ValueError("a protocol needs at least one object")
    by_id: dict[str, str] = {}
    for obj in objects:  # episode ids start with the object's short name: two objects may not share one
        other = by_id.setdefault(_short(obj), obj)
        if other != obj:
            raise ValueError(f"objects {other!r} and {obj!r} would share the episode ids {_short(obj)!r}-...: "
                             "rename one of the files")
    return PROTOCOLS[name](objects, backgrounds=backgrounds, seed=seed, **options)


def _short(name: str) -> str:
    from pathlib import Path

    return Path(name).stem.replace("_", "")
