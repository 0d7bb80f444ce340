"""A stand-in for the ``pyrealsense2`` module, with the calls :class:`dfbvs.cameras.RealSenseCamera` makes and their
librealsense semantics: a pipeline started with a config of enabled streams (RuntimeError when no device or serial
matches, or the mode is not offered), frame sets waited for with a timeout (RuntimeError when none comes), an align
processing block that maps the depth frame onto the colour stream, depth in z16 units of the device's depth scale,
timestamps in milliseconds, and intrinsics with a distortion model and five coefficients."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

import numpy as np


class stream(enum.Enum):  # noqa: N801 (the module's own names)
    color = 1
    depth = 2


class format(enum.Enum):  # noqa: N801, A001
    rgb8 = 1
    z16 = 2


class distortion(enum.Enum):  # noqa: N801
    none = 0
    brown_conrady = 1
    inverse_brown_conrady = 2


@dataclass
class intrinsics:  # noqa: N801
    width: int
    height: int
    fx: float
    fy: float
    ppx: float
    ppy: float
    model: distortion = distortion.inverse_brown_conrady
    coeffs: list = field(default_factory=lambda: [0.0] * 5)


@dataclass
class Device:
    """What a fake device delivers: ``frames`` of (rgb HxWx3 uint8, depth HxW uint16 in the *depth camera's* view,
    timestamp ms); ``align`` maps a depth image to the colour camera's view."""

    serial: str
    modes: set
    color_intrinsics: intrinsics
    depth_scale: float
    frames: list
    to_color: object = None  # depth image -> the same in the colour view
    started: bool = False
    stopped: bool = False


DEVICES: list[Device] = []  # what is "plugged in"


class _Frame:
    def __init__(self, data: np.ndarray, timestamp_ms: float, number: int):
        self._data, self._ts, self._n = data, timestamp_ms, number

    def get_data(self):
        return memoryview(np.ascontiguousarray(self._data))

    def get_timestamp(self) -> float:
        return self._ts

    def get_frame_number(self) -> int:
        return self._n

    def __bool__(self) -> bool:
        return self._data is not None


class _FrameSet:
    def __init__(self, color: _Frame, depth: _Frame, aligned: bool = False):
        self.color, self.depth, self.aligned = color, depth, aligned

    def get_color_frame(self):
        return self.color

    def get_depth_frame(self):
        return self.depth


class config:  # noqa: N801
    def __init__(self):
        self.serial, self.streams = None, []

    def enable_device(self, serial: str) -> None:
        self.serial = serial

    def enable_stream(self, s: stream, width: int, height: int, f: format, fps: int) -> None:
        self.streams.append((s, width, height, f, fps))


class _Sensor:
    def __init__(self, device: Device):
        self.device = device

    def get_depth_scale(self) -> float:
        return self.device.depth_scale


class _DeviceHandle:
    def __init__(self, device: Device):
        self.device = device

    def first_depth_sensor(self):
        return _Sensor(self.device)


class _StreamProfile:
    def __init__(self, intr: intrinsics):
        self.intr = intr

    def as_video_stream_profile(self):
        return self

    def get_intrinsics(self):
        return self.intr


class _Profile:
    def __init__(self, device: Device):
        self.device = device

    def get_device(self):
        return _DeviceHandle(self.device)

    def get_stream(self, s: stream):
        assert s is stream.color
        return _StreamProfile(self.device.color_intrinsics)


class pipeline:  # noqa: N801
    def __init__(self):
        self.device: Device | None = None
        self._next = 0

    def start(self, cfg: config) -> _Profile:
        candidates = [d for d in DEVICES if cfg.serial is None or d.serial == cfg.serial]
        if not candidates:
            raise RuntimeError("No device connected" if cfg.serial is None else
                               f"Couldn't resolve requests (no device with serial {cfg.serial})")
        device = candidates[0]
        for s, w, h, f, fps in cfg.streams:
            if (s, w, h, f, fps) not in device.modes:
                raise RuntimeError("Couldn't resolve requests")
        device.started = True
        self.device = device
        return _Profile(device)

    def wait_for_frames(self, timeout_ms: int = 5000) -> _FrameSet:
        assert self.device is not None and self.device.started and not self.device.stopped
        if self._next >= len(self.device.frames):
            raise RuntimeError(f"Frame didn't arrive within {timeout_ms}")
        rgb, depth, ts = self.device.frames[self._next]
        self._next += 1
        return _FrameSet(_Frame(rgb, ts, self._next), _Frame(depth, ts, self._next))

    def stop(self) -> None:
        assert self.device is not None
        self.device.stopped = True


class align:  # noqa: N801
    def __init__(self, to: stream):
        assert to is stream.color
        self.to = to

    def process(self, frames: _FrameSet) -> _FrameSet:
        device = next(d for d in DEVICES if d.started and not d.stopped)
        depth = np.asarray(frames.depth._data)
        mapped = device.to_color(depth) if device.to_color is not None else depth
        return _FrameSet(frames.color, _Frame(mapped, frames.depth._ts, frames.depth._n), aligned=True)
