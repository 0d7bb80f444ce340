"""Benchmark methods: how an :class:`EpisodeSpec` becomes an :class:`EpisodeConfig`.

Names: ``dfbvs`` (default deep features and settings), ``dfbvs-<extractor>`` (e.g. ``dfbvs-orb``,
``dfbvs-sift``, ``dfbvs-disk``, ``dfbvs-keypointnet`` with a checkpoint), each with optional flags from
:data:`FLAGS` (``-track``, ``-prevtrack``, ``-notrack``, ``-norefine``, ``-noguide``, ``-coarse``), and ``photometric`` (Collewet &
Marchand's direct visual servoing).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from ..servo import TrackingMode
from ..sim.episode import EpisodeConfig, GoalConfig, StartConfig
from .protocols import EpisodeSpec

PHOTOMETRIC = "photometric"


FLAGS = {
    "track": "tracking mode on, keeping the entry set (our default variant of the paper's rule)",
    "prevtrack": "tracking mode on with the paper's rule R(t) within R(t-1)",
    "notrack": "tracking mode off",
    "norefine": "no sub-pixel refinement of the correspondences (the paper's pipeline)",
    "noguide": "refine only the descriptor matches, not every target keypoint predicted by the PnP pose",
    "coarse": "refine on the working-resolution image (320x240) instead of the camera's own",
}


@dataclass(frozen=True)
class Method:
    """A parsed method name."""

    controller: str
    extractor: str | None = None
    flags: tuple[str, ...] = ()


def parse_method(name: str) -> Method:
    """Parse ``dfbvs[-<extractor>][-flag...]`` or ``photometric``; raises with the name on a bad one."""
    if name == PHOTOMETRIC:
        return Method(PHOTOMETRIC)
    parts = name.split("-")
    if parts[0] != "dfbvs":
        raise ValueError(f"unknown method {name!r}: use dfbvs[-<extractor>][-{'|-'.join(FLAGS)}] or photometric")
    flags = []
    while len(parts) > 1 and parts[-1] in FLAGS:
        flags.insert(0, parts.pop())
    extractor = "-".join(parts[1:]) or "aliked"
    from ..features import available_extractors

    if extractor not in available_extractors():
        raise ValueError(f"method {name!r}: unknown extractor {extractor!r}; available: {available_extractors()}")
    return Method("dfbvs", extractor, tuple(flags))


def scene_for_background(background: str, seed: int):
    """Scene of a benchmark background: ``similar`` (plain table close to the target render's clean
    background, no distractors), ``cluttered`` (procedural texture and distractors) or an image path."""
    from ..render.scene import SceneConfig

    if background == "similar":
        return SceneConfig.similar_to_target()
    if background == "cluttered":
        return SceneConfig()
    return replace(SceneConfig(), background=background)


def episode_config(spec: EpisodeSpec, method: str, base: EpisodeConfig = EpisodeConfig(),
                   keypointnet_checkpoint: str | None = None) -> EpisodeConfig:
    parsed = parse_method(method)
    obj_is_path = "/" in spec.object or "." in spec.object
    servo = base.servo
    stop = base.stop
    if parsed.controller == "dfbvs":
        for flag in parsed.flags:
            if flag in ("track", "prevtrack", "notrack"):
                mode = TrackingMode.PREVIOUS if flag == "prevtrack" else TrackingMode.ENTRY
                servo = replace(servo, tracking=replace(servo.tracking, enabled=flag != "notrack", mode=mode))
            elif flag == "norefine":
                servo = replace(servo, refine=False)
            elif flag == "noguide":
                servo = replace(servo, guided_refinement=False)
            elif flag == "coarse":
                servo = replace(servo, refine_at_native_resolution=False)
        servo = replace(servo, features=parsed.extractor, keypointnet_checkpoint=keypointnet_checkpoint)
    else:  # no correspondences: converge on a small twist
        stop = replace(stop, converged_twist_m_s=2e-4, converged_twist_rad_s=2e-3)
    return replace(
        base, controller=parsed.controller, object_name=spec.object if not obj_is_path else "custom",
        mesh_path=spec.object if obj_is_path else None,
        goal=GoalConfig(*spec.goal), start=StartConfig(T_goal_start=spec.T_goal_start),
        scene=scene_for_background(spec.background, spec.seed), servo=servo, stop=stop, seed=spec.seed,
    )

