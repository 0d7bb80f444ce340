"""Shared fixtures. ``rng``: a generator of its own for each test, seeded from the test's id, so results do
not depend on which tests ran before in the same worker (``pytest -n 2``)."""

import zlib

import numpy as np
import pytest


@pytest.fixture
def rng(request) -> np.random.Generator:
    return np.random.default_rng(zlib.crc32(request.node.nodeid.encode()))


@pytest.fixture(scope="session")
def aliked_bracket():
    """The default DFBVS servo (ALIKED, refinement) prepared once on the bracket seen by the simulated 640x480
    camera at the default goal, with the cluttered scene it is served in: ``(servo, scene, camera, T_goal)``.
    Tests that step it call ``servo.reset()`` first."""
    from dfbvs.render.objects import load_builtin
    from dfbvs.render.scene import build_scene
    from dfbvs.render.target import render_target
    from dfbvs.servo import DFBVSServo
    from dfbvs.sim.episode import EpisodeConfig

    config = EpisodeConfig()
    mesh = load_builtin("bracket")
    T_goal = config.goal.T_object_camera()
    servo = DFBVSServo.from_render(render_target(mesh, config.camera, T_goal), config.servo)
    return servo, build_scene(mesh, config.scene, seed=0), config.camera, T_goal
