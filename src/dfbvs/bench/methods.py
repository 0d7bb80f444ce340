"""Benchmark methods: how an :class:`EpisodeSpec` becomes an :class:`EpisodeConfig`.

Names: ``dfbvs`` (default deep features and settings), ``dfbvs-<extractor>`` (e.g. ``dfbvs-orb``,
``dfbvs-sift``, ``dfbvs-disk``, ``dfbvs-keypointnet`` with a checkpoint), each with an optional ``-track``
(the paper's tracking mode on) or ``-notrack`` suffix, and ``photometric`` (Collewet & Marchand's direct
visual servoing).
"""

from __future__ import annotations

from dataclasses import replace

from ..sim.episode import EpisodeConfig, GoalConfig, StartConfig
from .protocols import EpisodeSpec

PHOTOMETRIC = "photometric"


def parse_method(name: str) -> tuple[str, str | None, bool | None]:
    """``(controller, extractor, tracking)`` of a method name; raises with the name on a bad one."""
    if name == PHOTOMETRIC:
        return PHOTOMETRIC, None, False
    parts = name.split("-")
    if parts[0] != "dfbvs":
        raise ValueError(f"unknown method {name!r}: use dfbvs, dfbvs-<extractor>[-track|-notrack] or photometric")
    tracking = None  # the servo config's default
    if parts[-1] in ("track", "notrack"):
        tracking = parts[-1] == "track"
        parts = parts[:-1]
    extractor = "-".join(parts[1:]) or "aliked"
    from ..features import available_extractors

    if extractor not in available_extractors():
        raise ValueError(f"method {name!r}: unknown extractor {extractor!r}; available: {available_extractors()}")
    return "dfbvs", extractor, tracking


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
    controller, extractor, tracking = parse_method(method)
    obj_is_path = "/" in spec.object or "." in spec.object
    servo = base.servo
    stop = base.stop
    if controller == "dfbvs":
        if tracking is not None:
            servo = replace(servo, tracking=replace(servo.tracking, enabled=tracking))
        servo = replace(servo, features=extractor, keypointnet_checkpoint=keypointnet_checkpoint)
    else:  # no correspondences: converge on a small twist
        stop = replace(stop, converged_twist_m_s=2e-4, converged_twist_rad_s=2e-3)
    return replace(
        base, controller=controller, object_name=spec.object if not obj_is_path else "custom",
        mesh_path=spec.object if obj_is_path else None,
        goal=GoalConfig(*spec.goal), start=StartConfig(T_goal_start=spec.T_goal_start),
        scene=scene_for_background(spec.background, spec.seed), servo=servo, stop=stop, seed=spec.seed,
    )

