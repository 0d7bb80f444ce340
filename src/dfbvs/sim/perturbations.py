"""Things that happen to a simulated scene during an episode, on the episode's clock: an occluder passing
between the camera and the object (a hand, a tool, another part on a conveyor), a change of the lights (a door
opens, a lamp switches), and motion blur that grows with the camera's speed (the exposure integrates the
motion). A look-alike of the target beside it is a scene knob (``SceneConfig.lookalikes``)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Optional

import numpy as np

from ..errors import ConfigError
from ..geometry import inverse, make_pose, se3_exp, se3_log, so3_exp
from ..render.backend import DrawItem, Lighting, Material
from ..render.mesh import Mesh

ID_OCCLUDER = 1000  # above the distractors' ids


@dataclass(frozen=True)
class OcclusionConfig:
    """A flat, plain plate that slides across the view of the object from ``start_s`` for ``duration_s``
    (simulated s; None = no occlusion). It lies on the goal camera's line of sight, ``depth_fraction`` of the
    way from the goal camera to the object, moves along the goal camera's x axis, and its side is ``size``
    times the object's largest extent (about 1.5: covers all of it at mid-pass; 0.5: about a third)."""

    start_s: Optional[float] = None
    duration_s: float = 1.0
    size: float = 1.5
    depth_fraction: float = 0.5

    def __post_init__(self) -> None:
        if not self.duration_s > 0 or not self.size > 0 or not 0 < self.depth_fraction < 1:
            raise ConfigError(f"occlusion: need duration_s > 0, size > 0, 0 < depth_fraction < 1; got "
                              f"{self.duration_s!r}, {self.size!r}, {self.depth_fraction!r}")


class Occluder:
    """The plate of an :class:`OcclusionConfig` for an object of ``object_extent_m`` seen from
    ``T_object_goal``: ``items(t_s)`` is what to draw at simulated time ``t_s``."""

    def __init__(self, config: OcclusionConfig, T_object_goal: np.ndarray, object_extent_m: float) -> None:
        import trimesh

        self.config = config
        self.T_object_goal = np.asarray(T_object_goal, dtype=np.float64)
        self.side_m = config.size * object_extent_m
        goal_distance_m = float(np.linalg.norm(self.T_object_goal[:3, 3]))
        self.z_m = config.depth_fraction * goal_distance_m  # along the goal camera's optical axis
        box = trimesh.creation.box(extents=(self.side_m, self.side_m, 0.002))
        self.mesh = Mesh(np.asarray(box.vertices), np.asarray(box.faces), name="occluder",
                         base_rgb=(0.25, 0.3, 0.35))
        # the plate's image width in the goal camera is side/z; it travels 2 x its side: from fully left of the
        # line of sight to fully right of it
        self.travel_m = 2.0 * self.side_m

    def active(self, t_s: float) -> bool:
        c = self.config
        return c.start_s is not None and c.start_s <= t_s <= c.start_s + c.duration_s

    def items(self, t_s: float) -> list[DrawItem]:
        if not self.active(t_s):
            return []
        c = self.config
        assert c.start_s is not None
        phase = (t_s - c.start_s) / c.duration_s  # 0 .. 1
        x = (phase - 0.5) * self.travel_m
        T_goal_plate = make_pose(t=[x, 0.0, self.z_m])
        return [DrawItem(self.mesh, self.T_object_goal @ T_goal_plate, ID_OCCLUDER, Material(specular=0.05))]


@dataclass(frozen=True)
class LightChangeConfig:
    """From ``start_s`` (simulated s; None = never) on, every light of the scene is turned by ``rotate_deg``
    about the world's vertical (the table's normal) and its intensity multiplied by ``intensity_gain``, the
    ambient light by ``ambient_gain``: the shading of every face changes at once, mid-episode."""

    start_s: Optional[float] = None
    rotate_deg: float = 60.0
    intensity_gain: float = 0.6
    ambient_gain: float = 0.8

    def __post_init__(self) -> None:
        if not (self.intensity_gain >= 0 and self.ambient_gain >= 0 and np.isfinite(self.rotate_deg)):
            raise ConfigError(f"light_change: need finite rotate_deg and gains >= 0; got {self.rotate_deg!r}, "
                              f"{self.intensity_gain!r}, {self.ambient_gain!r}")

    def active(self, t_s: float) -> bool:
        return self.start_s is not None and t_s >= self.start_s

    def changed(self, lighting: Lighting) -> Lighting:
        """``lighting`` after the change."""
        R = so3_exp(np.array([0.0, 0.0, np.deg2rad(self.rotate_deg)]))
        def turned(light):
            x, y, z = (float(c) for c in R @ np.asarray(light.direction_world, dtype=np.float64))
            return replace(light, direction_world=(x, y, z), intensity=light.intensity * self.intensity_gain)

        lights = tuple(turned(light) for light in lighting.lights)
        return Lighting(ambient=lighting.ambient * self.ambient_gain, lights=lights)


@dataclass(frozen=True)
class MotionBlurConfig:
    """Each frame integrates the camera's motion over ``exposure_s`` before its timestamp (0: none): the mean of
    ``samples`` renders at poses spread over the exposure, along the motion since the previous frame. The blur
    grows with the camera's speed (at 0.05 m/s and 30 ms, 1.5 mm of travel: ~3 px at 0.22 m, 640x480)."""

    exposure_s: float = 0.0
    samples: int = 5

    def __post_init__(self) -> None:
        if not (np.isfinite(self.exposure_s) and self.exposure_s >= 0) or self.samples < 2:
            raise ConfigError(f"motion_blur: need exposure_s >= 0 and samples >= 2; got {self.exposure_s!r}, "
                              f"{self.samples!r}")


class MotionBlur:
    """Poses to average for a frame at ``(T_world_camera, t_s)`` under a :class:`MotionBlurConfig`: the
    camera's body twist is estimated from the previous frame's pose (the executed motion, whatever body moved
    it) and the exposure's poses are spread back along it."""

    def __init__(self, config: MotionBlurConfig) -> None:
        self.config = config
        self._previous: tuple[np.ndarray, float] | None = None

    def poses(self, T_world_camera: np.ndarray, t_s: float) -> list[np.ndarray]:
        c = self.config
        T = np.asarray(T_world_camera, dtype=np.float64)
        previous, self._previous = self._previous, (T, t_s)
        if c.exposure_s <= 0 or previous is None or not t_s > previous[1]:
            return [T]
        v_camera = se3_log(inverse(previous[0]) @ T) / (t_s - previous[1])  # body twist, m/s and rad/s
        if np.linalg.norm(v_camera) < 1e-12:  # standing still (the log of T^-1 T is ~1e-17, not exactly 0)
            return [T]
        return [T @ se3_exp(-v_camera * tau) for tau in np.linspace(0.0, c.exposure_s, c.samples)]
