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

Inside the servo loop a bad *frame* (too few matches) is a status of the step, never an exception.
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
