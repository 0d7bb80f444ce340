"""Shared fixtures. ``rng``: a generator of its own for each test, seeded from the test's id, so results do
not depend on which tests ran before in the same worker (``pytest -n 2``)."""

import zlib

import numpy as np
import pytest


@pytest.fixture
def rng(request) -> np.random.Generator:
    return np.random.default_rng(zlib.crc32(request.node.nodeid.encode()))
