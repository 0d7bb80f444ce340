"""The house: one registry for every kind of backend, typed configs with one override syntax, the run loop
with any frame source and motion sink, and the library's own errors."""

from dataclasses import dataclass

import numpy as np
import pytest

from _locking import locked_step
from dfbvs.config import PRESETS, apply_overrides, apply_preset, describe, settings
from dfbvs.control import CONTROL_LAWS, ControlInput, ControlOutput
from dfbvs.errors import CalibrationError, ConfigError, DfbvsError, MeshError, WeightsError
from dfbvs.features import EXTRACTORS, Extractor, FeatureConfig, build_extractor
from dfbvs.features._base import RawDetections
from dfbvs.matching import Correspondences
from dfbvs.registry import Registry
from dfbvs.servo import ServoConfig, ServoStep, StepStatus
from dfbvs.sim.episode import EpisodeConfig
from dfbvs.stop import EpisodeStatus, StopConfig, StopMonitor


# --- a toy extractor and a toy control law, added through the registries only ------------------------------
@dataclass(frozen=True)
class CornerPatchConfig(FeatureConfig):
    """Shi-Tomasi corners described by their normalised 9x9 grey patch."""

    quality: float = 0.01


class CornerPatchExtractor(Extractor):
    descriptor_dim = 81

    def _detect(self, rgb):
        import cv2

        grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
        pts = cv2.goodFeaturesToTrack(grey, self.config.max_keypoints, self.config.quality, 5, blockSize=5)
        uv = np.zeros((0, 2)) if pts is None else pts.reshape(-1, 2).astype(np.float64)
        padded = np.pad(grey.astype(np.float32), 4, mode="edge")
        c = np.rint(uv).astype(int) + 4
        offsets = np.arange(-4, 5)
        patches = padded[c[:, 1, None, None] + offsets[None, :, None], c[:, 0, None, None] + offsets[None, None, :]]
        desc = patches.reshape(len(uv), -1)
        desc = desc - desc.mean(axis=1, keepdims=True)
        return RawDetections(uv, desc, np.linspace(1.0, 0.5, len(uv)))


@dataclass(frozen=True)
class TranslationOnlyConfig:
    """A toy law: move the camera in x/y by ``gain`` times the mean normalized error, never rotate."""

    gain: float = 0.4


class TranslationOnlyLaw:
    def __init__(self, config: TranslationOnlyConfig) -> None:
        self.config = config
        self.calls = 0

    def __call__(self, inputs: ControlInput) -> ControlOutput:
        self.calls += 1
        e = (inputs.xy - inputs.xy_star).mean(axis=0)
        z = float(np.mean(inputs.Z_star_m))
        v = np.array([e[0] * z, e[1] * z, 0.0, 0.0, 0.0, 0.0]) * self.config.gain
        return ControlOutput(v_camera=v, error=(inputs.xy - inputs.xy_star).ravel(), gain=self.config.gain,
                             saturated=False, condition_number=1.0)


@pytest.fixture
def toy_backends():
    EXTRACTORS.register("corner-patch", CornerPatchExtractor, CornerPatchConfig)
    CONTROL_LAWS.register("translation-only", TranslationOnlyLaw, TranslationOnlyConfig)
    yield
    EXTRACTORS.unregister("corner-patch")
    CONTROL_LAWS.unregister("translation-only")


def test_toy_extractor_and_law_through_the_registry_drive_the_servo(toy_backends):
    from dfbvs.camera import Camera
    from dfbvs.geometry import make_pose
    from dfbvs.render.objects import load_builtin
    from dfbvs.render.scene import SceneConfig, build_scene, render_scene
    from dfbvs.render.target import render_target
    from dfbvs.servo import DFBVSServo
    from dfbvs.sim.episode import GoalConfig

    config = apply_overrides(EpisodeConfig(), ["servo.features=corner-patch", "servo.features.max_keypoints=300",
                                               "servo.control=translation-only", "servo.control.gain=0.5",
                                               "servo.refine.enabled=false"]).servo
    assert isinstance(config.features, CornerPatchConfig) and isinstance(config.control, TranslationOnlyConfig)
    assert build_extractor(config.features).name == "corner-patch"
    cam = Camera.default().rescaled(640, 480)
    mesh = load_builtin("bracket")
    T_goal = GoalConfig().T_object_camera()
    servo = DFBVSServo.from_render(render_target(mesh, cam, T_goal), config)
    # the camera 2 mm to the right of the goal: the object appears shifted left, e = x - x* < 0, so the toy
    # law must command a move to the left (vx < 0)
    shift = make_pose(t=[0.002, 0.0, 0.0])
    step = locked_step(servo, render_scene(build_scene(mesh, SceneConfig.clean(), seed=0), cam, T_goal @ shift).rgb)
    assert step.status is StepStatus.OK, step.status
    # (the first lock's twist is computed and checked too, then held until the second cycle confirms the lock)
    assert isinstance(servo.law, TranslationOnlyLaw) and servo.law.calls == 2
    assert step.gain == 0.5 and step.condition_number == 1.0
    assert step.v_camera[0] < 0 and np.allclose(step.v_camera[2:], 0.0), step.v_camera
    assert step.n_inliers >= 6


def test_registry_names_and_errors():
    reg: Registry = Registry("widget")
    reg.register("a", dict, TranslationOnlyConfig, defaults={"gain": 2.0})
    assert reg.names() == ["a"] and "a" in reg and "b" not in reg
    assert reg.default_config("a") == TranslationOnlyConfig(gain=2.0)
    with pytest.raises(ConfigError, match="unknown widget 'b'; available: a"):
        reg.default_config("b")
    with pytest.raises(ConfigError, match=r"widget 'a' has no setting \['speed'\]"):
        reg.default_config("a", speed=1)
    with pytest.raises(ConfigError, match="no widget is registered for a StopConfig"):
        reg.build(StopConfig())
    reg.register("hidden", dict, StopConfig, available=lambda: False)
    assert reg.names() == ["a"]


def test_overrides_parse_by_field_type_and_swap_backends():
    c = apply_overrides(EpisodeConfig(), ["servo.refine.window_px=21", "servo.tracking.enabled=true",
                                          "servo.tracking.mode=previous", "stop.converged_px=0.3",
                                          "mesh_path=none", "servo.features=disk", "servo.features.max_keypoints=300",
                                          "servo.matcher=lightglue"])
    assert c.servo.refine.window_px == 21 and c.servo.tracking.enabled and c.servo.tracking.mode.value == "previous"
    assert c.stop.converged_px == 0.3 and c.mesh_path is None
    assert type(c.servo.features).__name__ == "DiskConfig" and c.servo.features.max_keypoints == 300
    d = describe(c)
    assert d["servo"]["backend"] == "dfbvs" and d["servo"]["features"]["backend"] == "disk"
    assert d["servo"]["matcher"]["backend"] == "lightglue" and d["servo"]["tracking"]["mode"] == "previous"
    assert apply_overrides(EpisodeConfig(), []) == EpisodeConfig()
    assert type(apply_preset(EpisodeConfig(), "photometric").servo).__name__ == "PhotometricConfig"
    paper = apply_preset(EpisodeConfig(), "paper")
    assert not paper.servo.refine.enabled and paper.servo.tracking.enabled
    paths = [row[0] for row in settings(EpisodeConfig())]
    assert ("servo.refine.window_px" in paths and "servo.features.max_keypoints" in paths
            and "stop.max_iterations" in paths)
    assert set(PRESETS) >= {"default", "paper", "photometric", "photoreal"}
    real = apply_preset(EpisodeConfig(), "photoreal").servo
    assert real.edges.enabled and not real.relight.image_gain and real.relight.enabled
    assert real.relight.second_basis_renderer.startswith("blender") and real.relight.second_basis_choice == "verified"


@pytest.mark.parametrize("override, needle", [
    ("servo.refine.window_px=abc", "servo.refine.window_px='abc': expected int"),
    ("servo.refine.window_px=14", "window_px=14: must be an odd number"),
    ("servo.refine.windowpx=15", "RefineConfig has no setting 'windowpx'"),
    ("servo.features=superpoint", "unknown feature extractor 'superpoint'"),
    ("servo.tracking.mode=sometimes", "choose one of ['previous', 'entry']"),
    ("servo.tracking.enabled=maybe", "'maybe': expected true or false"),
    ("servo.refine=off", "'refine' is a group of settings"),
    ("servo.refine.window_px", "expected PATH=VALUE"),
    ("servo.control.interaction=current\nservo.rejection=fundamental", "needs the current depths"),
])
def test_bad_overrides_name_the_value(override, needle):
    with pytest.raises(ConfigError) as err:
        apply_overrides(EpisodeConfig(), override.split("\n"))
    assert needle in str(err.value)
    assert isinstance(err.value, ValueError) and isinstance(err.value, DfbvsError)


def test_library_errors_name_the_value(tmp_path):
    from dfbvs.camera import Camera
    from dfbvs.features.aliked import packaged_weights_path
    from dfbvs.render import load_mesh

    with pytest.raises(CalibrationError, match="fx=-3"):
        Camera(fx=-3, fy=500, cx=160, cy=120, width_px=320, height_px=240)
    empty = tmp_path / "empty.stl"
    empty.write_text("solid empty\nendsolid empty\n")
    with pytest.raises(MeshError, match="empty.stl"):
        load_mesh(empty)
    with pytest.raises(MeshError, match="'furlong'"):
        load_mesh(empty, unit="furlong")
    with pytest.raises(WeightsError, match="'nope.pth'"):
        packaged_weights_path("nope.pth")
    with pytest.raises(ConfigError, match="min_inliers must be >= 4.*got 3"):
        ServoConfig(min_inliers=3)


# --- the run loop with a fake source, servo and sink ------------------------------------------------------
class FakeSource:
    def __init__(self, n):
        self.n, self.count = n, 0

    def grab(self):
        from dfbvs.runtime import Frame

        if self.count >= self.n:
            return None
        self.count += 1
        return Frame(np.zeros((4, 4, 3), np.uint8), 0.5 * self.count)


class FakeServo:
    """Errors 10, 5, 2.5, ... px; a failed step at cycle ``fail_at``; raises at cycle ``raise_at``."""

    def __init__(self, fail_at=None, raise_at=None):
        self.cycle, self.fail_at, self.raise_at = 0, fail_at, raise_at

    def step(self, image, timestamp_s=float("nan")):
        self.cycle += 1
        if self.cycle == self.raise_at:
            raise RuntimeError("network crashed")
        ok = self.cycle != self.fail_at
        uv = np.random.default_rng(0).uniform(0, 300, size=(20, 2))  # a lock pinned down by 20 spread points
        inliers = Correspondences(uv, uv, np.arange(20), np.arange(20), np.ones(20))
        return ServoStep(v_camera=np.full(6, 0.1) if ok else np.zeros(6),
                         status=StepStatus.OK if ok else StepStatus.TOO_FEW_INLIERS,
                         correspondences=inliers if ok else Correspondences.empty(),
                         all_matches=Correspondences.empty(),
                         mean_error_px=10.0 / 2 ** self.cycle if ok else float("nan"), tracking_mode=False,
                         timings_ms={"total_ms": 1.0}, timestamp_s=timestamp_s)

    def reset(self):
        pass


class FakeSink:
    def __init__(self):
        self.applied, self.stopped = [], 0

    def apply(self, v_camera):
        self.applied.append(np.array(v_camera))

    def pose(self):
        return None

    def stop(self):
        self.stopped += 1


def test_run_loop_converges_with_any_source_and_sink():
    from dfbvs.runtime import run_servo_loop

    sink, cycles = FakeSink(), []
    out = run_servo_loop(FakeSource(100), FakeServo(fail_at=2), sink,
                         StopMonitor(StopConfig(converged_px=0.2, converged_cycles=2)), progress=cycles.append)
    # errors 5, (failed), 1.25, 0.625, 0.3125, 0.156, 0.078: converged after two cycles below 0.2 px
    assert out.status is EpisodeStatus.CONVERGED and out.iterations == 7
    assert ([c.frame.timestamp_s for c in cycles] == [c.step.timestamp_s for c in cycles]
            == [0.5 * i for i in range(1, 8)])
    assert len(sink.applied) == 6 and np.all(sink.applied[1] == 0)  # the failed step commands no motion
    assert sink.stopped == 1 and out.median_cycle_ms == 1.0


def test_run_loop_stops_the_sink_on_every_exit():
    from dfbvs.runtime import ProbeReading, run_servo_loop

    sink = FakeSink()
    out = run_servo_loop(FakeSource(3), FakeServo(), sink, StopMonitor())
    assert out.status is EpisodeStatus.STOPPED and out.iterations == 3 and sink.stopped == 1  # source ran dry
    sink = FakeSink()
    with pytest.raises(RuntimeError, match="network crashed"):
        run_servo_loop(FakeSource(10), FakeServo(raise_at=3), sink, StopMonitor())
    assert sink.stopped == 1 and len(sink.applied) == 2
    sink = FakeSink()
    out = run_servo_loop(FakeSource(10), FakeServo(), sink, StopMonitor(),
                         probe=lambda T: ProbeReading({"x_mm": 1.0}, EpisodeStatus.DIVERGED))
    assert out.status is EpisodeStatus.DIVERGED and out.iterations == 1 and sink.applied == [] and sink.stopped == 1
    assert out.last.extras == {"x_mm": 1.0}
