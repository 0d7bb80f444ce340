"""Benchmark methods: how an :class:`EpisodeSpec` becomes an :class:`EpisodeConfig`.

Names: ``dfbvs`` (default deep features and settings), ``dfbvs-<extractor>`` (e.g. ``dfbvs-orb``,
``dfbvs-sift``, ``dfbvs-disk``, ``dfbvs-keypointnet`` with a checkpoint), each with optional flags from
:data:`FLAGS` (``-track``, ``-prevtrack``, ``-notrack``, ``-norefine``, ``-noguide``, ``-coarse``), and
``photometric`` (Collewet & Marchand's direct visual servoing). A method is a list of config overrides in
the syntax of ``--set`` (:func:`method_overrides`), applied on top of the run's base config.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Sequence

from ..config import PRESETS, apply_overrides
from ..errors import ConfigError
from ..sim.episode import EpisodeConfig, GoalConfig, StartConfig
from .protocols import EpisodeSpec, is_mesh_path

PHOTOMETRIC = "photometric"


#: Method flags: each is a list of config overrides (the one syntax of ``--set``) and what it means.
FLAGS: dict[str, tuple[tuple[str, ...], str]] = {
    "track": (("servo.tracking.enabled=true", "servo.tracking.mode=entry"),
              "tracking mode on, keeping the entry set (our default variant of the paper's rule)"),
    "prevtrack": (("servo.tracking.enabled=true", "servo.tracking.mode=previous"),
                  "tracking mode on with the paper's rule R(t) within R(t-1)"),
    "notrack": (("servo.tracking.enabled=false",), "tracking mode off"),
    "norefine": (("servo.refine.enabled=false",),
                 "no sub-pixel refinement of the correspondences (the paper's pipeline)"),
    "noguide": (("servo.refine.guided=false",),
                "refine only the descriptor matches, not every target keypoint predicted by the PnP pose"),
    "coarse": (("servo.refine.at_native_resolution=false",),
               "refine on the working-resolution image (320x240) instead of the camera's own"),
    "realtime": (("timing.mode=realtime",),
                 "a 30 fps camera on a simulated clock, the twist applied after the measured compute time"),
    "hybrid": (("servo.control=hybrid",),
               "IBVS far from the goal, pose-based from the PnP pose near it (every direction at the commanded rate)"),
    "wide": (PRESETS["wide"],
             "the wide preset: 16 rolled target views (acquire at any roll), detection zoomed on a far object, "
             "centroid PBVS beyond 15 deg or 25 % of the goal distance, IBVS between, PBVS at the goal"),
    "photoreal": (PRESETS["photoreal"],
                  "the photoreal preset: the outline fitted with the keypoints near the goal, the target relit without "
                  "the image's gain field, from the rasteriser's or the path tracer's shading basis, whichever more of "
                  "the cycle's points verify on (docs/photoreal.md)"),
    "pathbasis": (("servo.relight.basis_renderer=blender:transfer=linear,samples=8", "servo.relight.directions=20"),
                  "the target relit with a shading basis of 20 light directions drawn by Cycles in linear light (cast "
                  "shadows, interreflection) instead of the rasteriser's 50 (docs/photoreal.md)"),
    "twobasis": (("servo.relight.second_basis_renderer=blender:transfer=linear,samples=8",),
                 "beside the rasteriser's shading basis, one of 20 directions drawn by Cycles in linear light, used "
                 "where it fits the object's shading clearly better (docs/photoreal.md; part of -photoreal since)"),
    "verified": (("servo.relight.second_basis_choice=verified",),
                 "with two shading bases, the one on which more of the cycle's points refine and verify is kept at "
                 "each refit (instead of the second only where its residual is clearly lower; docs/photoreal.md; part "
                 "of -photoreal since)"),
    "nogain": (("servo.relight.image_gain=false",),
               "the target relit by its shading basis alone, without the smooth gain field over the image"),
    "zoom": (("servo.acquisition.zoom_max=2",),
             "live features extracted on a crop around where the last pose puts the object (up to 2x zoom; the "
             "default since issue 14's measures, so the same as no flag now)"),
    "nozoom": (("servo.acquisition.zoom_max=1",),
               "live features always extracted on the whole image (the default before issue 14's measures)"),
    "live2k": (("servo.live_max_keypoints=2000",),
               "2000 keypoints on the live image (the target keeps its 500): a feature-poor part's corners are not "
               "all outranked by a busy background's"),
    "rim": (("servo.edges.depth_jump_ratio=0.01",), "the object's own depth edges (the rim of a slot, a step) as "
            "model edges beside its outline (docs/parts.md)"),
    "closer": (("servo.relight.refit_closer=0.5",), "the lighting refitted also whenever the pose is nearer the goal "
               "than half of where it was last fitted (measured for issue 13, not adopted; docs/parts.md)"),
    "oneround": (("servo.refine.guided_rounds=1",), "one round of guided refinement, from the descriptor pose only "
                 "(before the second round from the refined pose; docs/parts.md)"),
    "relitedges": (("servo.edges.relit_reference=true",), "the model edges' reference offsets read on the relit "
                   "target (docs/parts.md)"),
    "nocoverage": (("servo.relight.outline_coverage=false",), "the relit target's outline mixed with the background "
                   "by the basis weights' sum (the behaviour before the coverage image; docs/convergence.md)"),
    "edges": (("servo.edges.enabled=true",),
              "the object's outline measured at the PnP pose and fitted with the keypoints (dfbvs.edges): the law "
              "sees the inliers where that pose puts them"),
    "norelight": (("servo.relight.enabled=false",),
                  "the target is not relit to the camera image's lighting near the goal (dfbvs.relight; the default "
                  "before it was measured, docs/convergence.md)"),
    "trustshading": (("servo.shading_guard=0",), "the servo moves on a goal view whose keypoints are the part's "
                     "shading (before issue 13's shading guard; docs/parts.md)"),
    "noconfirm": (("servo.lock.confirm=false",),
                  "every credible lock moves the camera at once, unconfirmed by the next cycle (before issue 13's "
                  "second measurement)"),
    "veto": (("servo.lock.strong_match_inliers=100000",),
             "refinement vetoes every lock it cannot verify, however many descriptor inliers (before issue 13)"),
    "pxstop": (("stop.converged_pose_translation_ratio=0", "stop.converged_settled_cycles=0"),
               "the old stop rule: converged on the image error alone (below converged_px for converged_cycles)"),
    "rgbd": (("depth_sensor.enabled=true",),
             "an RGB-D camera: frames carry a simulated stereo depth (sim/depth_sensor.py: 0.5 mm RMS at 0.2 m, "
             "0.2 % scale error, no depth at steps), which serves a goal view of shading (servo.depth; docs/parts.md)"),
    "nnicp": (("servo.depth.projective_gates_m=[]",),
              "the depth fit pairs points by nearest neighbour only, without the projective stages (before they "
              "were measured: biased on the shaft; docs/parts.md)"),
    "rawdepth": (("servo.depth.smoothing=1",),
                 "each depth fit used as it is, not averaged with the prior over frames (docs/parts.md)"),
    "ur5e": (("robot.kind=ur5e", "robot.grasp=true"),
             "the camera on a simulated UR5e (RTDE code path, safety layer), grasping after convergence"),
    "ur5eerr": (("robot.kind=ur5e", "robot.grasp=true", "robot.hand_eye_error_mm=2", "robot.hand_eye_error_deg=0.2",
                 "robot.intrinsics_error_pct=1", "robot.latency_frames=1"),
                "as -ur5e with a real cell's errors: hand-eye 2 mm / 0.2 deg, intrinsics 1 %, 1 frame latency"),
}
TRACKING = "tracking"
#: Flags of the tracking servo (``tracking[-<extractor>][-flag...]``), as :data:`FLAGS` for ``dfbvs``.
TRACKING_FLAGS: dict[str, tuple[tuple[str, ...], str]] = {
    "confirm1": (("servo.confirm_detections=1",),
                 "every detection drives before a track is established (before issue 13: no second detection "
                 "confirming the first)"),
    "detconfirm": (("servo.confirm_by_tracking=false",),
                   "only a second detection confirms the first (before the tracked cycle could, the default since "
                   "the coarse phase closes the loop on the predicted pose)"),
    "provisional": (("servo.provisional_tracked_confirmation=true",),
                    "a track confirmed by a tracked cycle is dropped when the next detection disagrees with its pose "
                    "(measured for issue 13, not adopted; docs/parts.md)"),
    "trustcorrection": (("servo.hold_on_dispute=false",),
                        "a detection that disagrees with the track replaces its pose at once, instead of holding still "
                        "until the next detection decides (before issue 13's rule; docs/parts.md)"),
    "freetrack": (("servo.unverified_motion_ratio=0", "servo.unverified_motion_deg=0"),
                  "a track confirmed by a tracked cycle drives freely before any detection has agreed with it "
                  "(before issue 13's limit; docs/parts.md)"),
    "nounreliable": (("servo.unreliable_disagreements=0",),
                     "a target whose detections keep disagreeing with each other is not declared unreliable "
                     "(before issue 13's rule; docs/parts.md)"),
    "rgbd": FLAGS["rgbd"],
    "nnicp": (("servo.detection.depth.projective_gates_m=[]",), FLAGS["nnicp"][1]),
    "rawdepth": (("servo.detection.depth.smoothing=1",), FLAGS["rawdepth"][1]),
    "looseconfirm": (("servo.confirm_translation_ratio=0.12", "servo.confirm_rotation_deg=8"),
                     "two measurements confirm within 12 % of the depth and 8 deg, the per-frame servo's tolerances "
                     "(instead of 5 % / 3 deg; docs/realtime.md)"),
    "live2k": (("servo.detection.live_max_keypoints=2000",), "2000 keypoints on the live image for the detections"),
    "rim": (("servo.detection.edges.depth_jump_ratio=0.01",), "the object's own depth edges (the rim of a slot, a "
            "step) as model edges beside its outline"),
    "closer": (("servo.detection.relight.refit_closer=0.5",), "the detections refit the lighting also whenever the "
               "pose is nearer the goal than half of where it was last fitted (measured for issue 13, not adopted)"),
    "oneround": (("servo.detection.refine.guided_rounds=1",), "the detections' guided refinement in one round, from "
                 "the descriptor pose only (before the second round from the refined pose; tracked cycles run one)"),
    "trustshading": (("servo.detection.shading_guard=0",), "the servo moves on a goal view whose keypoints are the "
                     "part's shading (before issue 13's shading guard; docs/parts.md)"),
    "unlit": (("servo.relight_before_converging=false",), "a tracked run may converge near the goal before the target "
              "is relit to the camera's lighting (before issue 13's rule; docs/parts.md)"),
    "nocoverage": (("servo.detection.relight.outline_coverage=false",), "the relit target's outline mixed with "
                   "the background by the basis weights' sum (the behaviour before the coverage image)"),
    "edges": (("servo.detection.edges.enabled=true",),
              "the object's outline fitted with the aligned points on every tracked cycle near the goal, and with "
              "the matches in the detections (dfbvs.edges)"),
    "norelight": (("servo.detection.relight.enabled=false",),
                  "the detections do not relight the target to the camera image's lighting near the goal "
                  "(dfbvs.relight; the default before it was measured, docs/realtime.md)"),
    "heldcoarse": (("servo.coarse_from_prediction=false",),
                   "the coarse phase holds the latest detection's own twist until the next detection (before the "
                   "closed loop on the predicted pose)"),
    "gain3": (("servo.control.gain.gain_at_zero=3", "servo.control.gain.gain_at_infinity=1.5"),
              "the tracked loop's adaptive gain 3 -> 1.5 /s (the default before) instead of 5 -> 2.5 /s"),
    "gain8": (("servo.control.gain.gain_at_zero=8", "servo.control.gain.gain_at_infinity=4"),
              "the tracked loop's adaptive gain 8 -> 4 /s instead of 5 -> 2.5 /s"),
}


@dataclass(frozen=True)
class Method:
    """A parsed method name."""

    controller: str
    extractor: str | None = None
    flags: tuple[str, ...] = ()


def parse_method(name: str) -> Method:
    """Parse ``dfbvs[-<extractor>][-flag...]`` (flags from :data:`FLAGS`), ``tracking[-<extractor>][-flag...]``
    (the camera-rate tracking servo with that extractor for its background detections, in real time; flags from
    :data:`TRACKING_FLAGS`) or ``photometric``; raises with the name on a bad one."""
    if name == PHOTOMETRIC:
        return Method(PHOTOMETRIC)
    parts = name.split("-")
    if parts[0] not in ("dfbvs", TRACKING):
        raise ConfigError(f"unknown method {name!r}: use dfbvs[-<extractor>][-{'|-'.join(FLAGS)}], "
                          f"tracking[-<extractor>][-{'|-'.join(TRACKING_FLAGS)}] or photometric")
    known = TRACKING_FLAGS if parts[0] == TRACKING else FLAGS
    flags: list[str] = []
    while len(parts) > 1 and parts[-1] in known:
        flags.insert(0, parts.pop())
    extractor = "-".join(parts[1:]) or "aliked"
    from ..features import available_extractors

    if extractor not in available_extractors():
        raise ConfigError(f"method {name!r}: unknown extractor {extractor!r}; available: {available_extractors()}")
    return Method(parts[0], extractor, tuple(flags))


#: The one vocabulary of backgrounds of every command (``sim``, ``render``, ``bench run``): name -> meaning.
#: Besides these names a background can be the path of an image file, stretched over the table.
BACKGROUNDS: dict[str, str] = {
    "cluttered": "procedural workbench-mat texture on the table, distractor objects and the sim-to-real gap",
    "similar": "plain table close to the target render's background, no distractors, the sim-to-real gap",
    "clean": "no table, no distractors, no gap: exactly the target render",
    "photo": "a photograph of gravel, grass or bricks (chosen and tinted by the seed) on the table, distractors "
             "and the sim-to-real gap",
}
#: Old names still accepted (deprecated): ``sim --background procedural`` meant ``cluttered``.
BACKGROUND_ALIASES: dict[str, str] = {"procedural": "cluttered"}


def canonical_background(value: str) -> str:
    """The canonical name of background ``value`` (an alias becomes its name), or ``value`` itself when it is
    a readable image file; raises :class:`ConfigError` naming the value and the valid names otherwise."""
    name = str(value).strip()
    if name in BACKGROUNDS:
        return name
    if name in BACKGROUND_ALIASES:
        return BACKGROUND_ALIASES[name]
    path = Path(name).expanduser()
    valid = f"use one of {', '.join(BACKGROUNDS)} or the path of an image file"
    if not name or not path.is_file():
        raise ConfigError(f"background {value!r}: not a background name and no such image file; {valid}")
    try:
        from PIL import Image

        with Image.open(path) as image:
            image.verify()
    except Exception as exc:  # PIL raises several unrelated types for a non-image
        raise ConfigError(f"background {value!r}: not a readable image ({type(exc).__name__}); {valid}") from None
    return str(path)


def scene_for_background(background: str, seed: int):
    """Scene of a background (see :data:`BACKGROUNDS`): ``cluttered`` (procedural texture and distractors),
    ``similar`` (plain table close to the target render's clean background, no distractors), ``clean`` (the
    target render's empty background, no gap), an alias of one of these, or an image path."""
    from ..render.scene import SceneConfig

    background = canonical_background(background)
    if background == "similar":
        return SceneConfig.similar_to_target()
    if background == "cluttered":
        return SceneConfig()
    if background == "clean":
        return SceneConfig.clean()
    return replace(SceneConfig(), background=background)  # "photo" or an image path


def scene_with_overrides(scene, configured) -> object:
    """``scene`` (a background's :class:`SceneConfig`) with every field that ``configured`` (the scene of a
    config after the run's overrides, e.g. ``--set scene.renderer=blender``) changed from the default."""
    from dataclasses import fields

    from ..render.scene import SceneConfig

    default = SceneConfig()
    changed = {f.name: getattr(configured, f.name) for f in fields(SceneConfig)
               if getattr(configured, f.name) != getattr(default, f.name)}
    return replace(scene, **changed)


def method_overrides(method: str, keypointnet_checkpoint: str | None = None) -> tuple[str, ...]:
    """The config overrides that turn the base episode into ``method``'s."""
    parsed = parse_method(method)
    if parsed.controller == PHOTOMETRIC:  # no correspondences: converge on a small twist
        return PRESETS["photometric"]
    features = "servo.detection.features" if parsed.controller == TRACKING else "servo.features"
    overrides = [*(PRESETS[TRACKING] if parsed.controller == TRACKING else ()), f"{features}={parsed.extractor}"]
    if keypointnet_checkpoint is not None and parsed.extractor == "keypointnet":
        overrides.append(f"{features}.checkpoint_path={keypointnet_checkpoint}")
    for flag in parsed.flags:
        overrides.extend((TRACKING_FLAGS if parsed.controller == TRACKING else FLAGS)[flag][0])
    return tuple(overrides)


def episode_config(spec: EpisodeSpec, method: str, overrides: Sequence[str] = (),
                   keypointnet_checkpoint: str | None = None) -> EpisodeConfig:
    """The episode config of ``spec`` run with ``method``: the default episode, the method's overrides, then
    the run's own ``overrides`` (e.g. ``stop.max_iterations=150``), then the spec's object, goal, start,
    scene and seed, then the spec's own overrides (a protocol's perturbation)."""
    obj_is_path = is_mesh_path(spec.object)
    config = apply_overrides(EpisodeConfig(), (*method_overrides(method, keypointnet_checkpoint), *overrides))
    config = replace(
        config, object_name=spec.object if not obj_is_path else "custom",
        mesh_path=spec.object if obj_is_path else None,
        # a user mesh is framed (its centre, at the distance that fits its size); built-ins keep the protocol's
        goal=GoalConfig(None if obj_is_path else spec.goal[0], *spec.goal[1:]),
        start=StartConfig(T_goal_start=spec.T_goal_start),
        scene=scene_with_overrides(scene_for_background(spec.background, spec.seed), config.scene), seed=spec.seed,
    )
    return apply_overrides(config, spec.overrides) if spec.overrides else config
