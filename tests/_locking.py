"""Shared by the servo tests: a first lock waits one cycle for the next to confirm it (``LockConfig.confirm``)."""

from __future__ import annotations

import numpy as np

from dfbvs.servo import ServoStep, StepStatus


def locked_step(servo, frame: np.ndarray, timestamp_s: float = float("nan")) -> ServoStep:
    """Two cycles of a freshly reset ``servo`` on ``frame``: the first lock holds still (status unconfirmed, zero
    twist), the second, agreeing with it, is returned."""
    first = servo.step(frame, timestamp_s)
    assert first.status is StepStatus.UNCONFIRMED and not np.any(first.v_camera), (first.status, first.reason)
    return servo.step(frame, timestamp_s)
