"""A free-flying camera: integrates a camera body twist with the SE(3) exponential. It is the motion sink
of a simulated run (:class:`dfbvs.runtime.MotionSink`)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import ConfigError
from ..geometry import integrate_body_twist


@dataclass
class FreeFlyingCamera:
    """Camera pose ``T_world_camera`` that moves with a constant body twist over each step of ``dt_s``."""

    T_world_camera: np.ndarray
    dt_s: float = 0.04
    _history: list = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        T = np.asarray(self.T_world_camera, dtype=np.float64)
        if T.shape != (4, 4) or not np.all(np.isfinite(T)):
            raise ConfigError(f"T_world_camera must be a finite 4x4 matrix, got shape {T.shape}")
        if not (self.dt_s > 0):
            raise ConfigError(f"dt must be > 0 s, got {self.dt_s!r}")
        self.T_world_camera = T

    def step(self, v_camera: np.ndarray) -> np.ndarray:
        """Apply twist ``v_camera`` (m/s, rad/s, camera frame) for ``dt_s``; returns the new pose."""
        v = np.asarray(v_camera, dtype=np.float64).reshape(6)
        if not np.all(np.isfinite(v)):
            raise ValueError(f"camera twist must be finite, got {v.tolist()}")
        self.T_world_camera = integrate_body_twist(self.T_world_camera, v, self.dt_s)
        return self.T_world_camera

    # --- the motion-sink interface --------------------------------------------------------------------------
    def apply(self, v_camera: np.ndarray) -> None:
        """Move with ``v_camera`` for one step of ``dt_s``."""
        self.step(v_camera)

    def pose(self) -> np.ndarray:
        return self.T_world_camera

    def stop(self) -> None:
        """Nothing to do: a free-flying camera moves only when a twist is applied."""
