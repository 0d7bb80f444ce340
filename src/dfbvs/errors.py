"""The library's own errors. Each names the value it received.

Every class also derives from the built-in exception a caller would naturally catch (``ValueError`` for bad
values, ``FileNotFoundError`` for missing weights), so ``except ValueError`` keeps working.

- :class:`ConfigError`: a configuration value, an unknown backend name, a bad override ``--set a.b=c``.
- :class:`MeshError`: a mesh file that cannot be a CAD model (no faces, unknown unit, unreadable).
- :class:`CalibrationError`: camera intrinsics or a calibration file that cannot describe a camera.
- :class:`WeightsError`: network weights missing from disk (never fetched from the network) or unreadable.
- :class:`CameraError`: a camera, video or image folder that cannot be opened or read (``OSError``).
- :class:`RobotError`: an arm that refuses or cannot do what was asked (unreachable, protective stop).
- :class:`OutputPathError`: an output folder that is a file, lies under a file, or cannot be written.
- :class:`ResultsFileError`: a benchmark results file with a corrupted line, or a results folder that belongs
  to another protocol or option set.
- :class:`FrameError`: an image that does not fit the camera / entry point it is given to (size, aspect, dtype,
  channels), refused before any dependency sees it.
- :class:`TargetError`: a target render that cannot be servoed on (object not in view, too few keypoints).

Inside the servo loop a frame that *is* an image of the right camera but shows no credible lock (too few
matches or inliers, an implausible pose) is a status of the step with a zero twist, never an exception; a frame
that is not such an image at all is a :class:`FrameError`.
"""

from __future__ import annotations


class DfbvsError(Exception):
    """Base class of every error raised on purpose by dfbvs."""


class ConfigError(DfbvsError, ValueError):
    """A configuration value, backend name or override is not acceptable."""


class MeshError(DfbvsError, ValueError):
    """A mesh cannot serve as a CAD model."""


class CalibrationError(DfbvsError, ValueError):
    """Camera intrinsics or a calibration file are not usable."""


class WeightsError(DfbvsError, FileNotFoundError):
    """Network weights are missing on disk or do not fit the network."""


class CameraError(DfbvsError, OSError):
    """A camera device, stream, video file or image folder cannot be opened or read."""


class RobotError(DfbvsError, RuntimeError):
    """A robot refused or could not do what was asked (unreachable pose, protective stop, lost connection)."""


class OutputPathError(DfbvsError, ValueError):
    """An output path cannot receive the files: it is a file, lies under a file, or is not writable."""


class ResultsFileError(DfbvsError, ValueError):
    """A benchmark results folder cannot take this run: a corrupted line, or another protocol or option set."""


class FrameError(DfbvsError, ValueError):
    """An image handed to a servo, to ``match`` or to another image entry point cannot be used: not an image
    array, a dtype or channel count that has no defined meaning, or a size / aspect that does not fit the camera
    it is supposed to come from. The message says what was received and what is expected."""


class TargetError(DfbvsError, ValueError):
    """A target render cannot serve as a servo target: the object is not (or hardly) in view, fills the whole
    image, lies outside the working depth range, or shows too few keypoints. The message says why and what to
    try (mesh unit, goal distance, mesh origin)."""


class PoseError(DfbvsError, ValueError):
    """A pose that is not a finite rigid 4x4 transform (wrong shape, NaN, a scaled or reflected rotation, a last
    row other than 0 0 0 1)."""
