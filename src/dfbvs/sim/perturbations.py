"""Things that happen to a simulated scene during an episode, on the episode's clock: an occluder passing
between the camera and the object (a hand, a tool, another part on a conveyor)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from ..errors import ConfigError
from ..geometry import make_pose
from ..render.backend import DrawItem, Material
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
