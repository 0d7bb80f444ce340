"""Simulation: a free-flying camera, point-feature worlds and rendered DFBVS episodes."""

from .free_camera import FreeFlyingCamera

__all__ = ["FreeFlyingCamera"]
