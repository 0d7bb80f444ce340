"""Where would the servo loop settle? Measure the correspondence bias near the goal pose.

Near the goal the true image position of every correspondence's target point is known (its 3D point from the
rendered depth, moved by the known camera offset), so ``measured - true`` is the measurement error of the
pipeline (bias plus noise). IBVS drives ``pinv(L*) e`` to zero, so to first order a measurement error ``r``
makes the loop settle at the camera displacement ``dp = -pinv(L*) r`` (metres, radians) from the goal. This
script renders the episode's scene at ``--frames`` poses a small random offset (``--offset-mm``,
``--offset-deg``) from the goal (fresh sensor noise each), runs one servo cycle on each and prints, per
variant, the settled-pose offset of single frames (noise) and of their mean (bias), side by side in one run, and
(with relighting) the robust scale of the lighting fit's residual (grey levels, median over the frames).
Seconds per variant instead of minutes per episode.

    .venv/bin/python benchmarks/goal_bias.py --frames 6 \
        --variant previous 'camera_scale=1 servo.refine.guided=false servo.refine.window_px=13
                            servo.refine.min_eigen_ratio=0' \
        --variant default ''

A variant is a space-separated list of ``PATH=VALUE`` overrides of the episode config (the ``--set`` syntax,
``dfbvs config``), plus three keys of this script: ``camera_scale`` (render camera = Camera.default()
times this; default 2 = 640x480), ``target_supersample``, ``target_renderer`` (e.g. ``blender:samples=64``),
``object``, and ``episode`` (``PROTOCOL:EPISODE_ID``, e.g. ``accuracy18:connector-G2-T2``: that bench episode's
object, scene, camera and goal in place of the default episode's).
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace

import numpy as np

from dfbvs.camera import Camera
from dfbvs.control import interaction_matrix_normalized
from dfbvs.features import build_extractor
from dfbvs.geometry import inverse, se3_exp, transform_points
from dfbvs.relight import basis_directions, basis_renderer, second_basis
from dfbvs.render.objects import load_builtin
from dfbvs.render.scene import build_scene, render_scene
from dfbvs.render.target import render_target
from dfbvs.servo import DFBVSServo, StepStatus
from dfbvs.target import prepare_target
from servo_variant import episode_config  # same directory


def settle_offset(step, servo, T_camera_goal: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """First-order settled camera offset ``-pinv(L*) r`` (6,) caused by the measurement error ``r`` of one
    cycle's inliers, |r| (working px) of each inlier, and ``r`` itself (N, 2, working px)."""
    target, c = servo.target, step.correspondences
    idx = c.index_target
    p_goal = target.points_camera_goal_m[idx]
    uv_true = target.camera.project(transform_points(T_camera_goal, p_goal))
    r_px = c.uv_current_px - uv_true
    r = (target.camera.pixel_to_normalized(c.uv_current_px) - target.camera.pixel_to_normalized(uv_true))
    L = interaction_matrix_normalized(target.xy_star[idx], target.Z_star_m[idx])
    return -np.linalg.pinv(L) @ r.reshape(-1), np.linalg.norm(r_px, axis=1), r_px


def run_variant(name: str, spec: str, frames: int, offset_mm: float, offset_deg: float, extractors: dict,
                same_pose: bool = False) -> dict:
    # camera_scale 2: the default 640x480
    own = {"camera_scale": "2", "target_supersample": "3", "object": "bracket", "target_renderer": "moderngl",
           "episode": ""}
    overrides = []
    for item in spec.split():
        key, _, value = item.partition("=")
        if key in own:
            own[key] = value
        else:
            overrides.append(item)
    scale, target_ss = int(own["camera_scale"]), int(own["target_supersample"])
    if own.get("episode"):  # PROTOCOL:EPISODE_ID: that bench episode's object, scene, camera and goal
        from dfbvs.bench.methods import episode_config as bench_episode_config
        from dfbvs.bench.protocols import make_protocol
        from dfbvs.config import apply_overrides
        from dfbvs.sim.episode import episode_mesh

        protocol, _, episode_id = own["episode"].partition(":")
        spec = next((s for s in make_protocol(protocol, ["bracket", "connector", "gear"])
                     if s.episode_id == episode_id), None)
        if spec is None:
            raise SystemExit(f"episode={own['episode']!r}: no such episode in protocol {protocol!r}")
        config = apply_overrides(bench_episode_config(spec, "dfbvs"), overrides)
        camera = config.camera
        mesh = episode_mesh(config)
        T_goal = config.goal.T_object_camera(mesh, camera)
    else:
        base = Camera.default()
        camera = base.rescaled(base.width_px * scale, base.height_px * scale)
        config = replace(episode_config(overrides), object_name=own["object"], camera=camera)
        mesh = load_builtin(config.object_name)
        T_goal = config.goal.T_object_camera()
    servo_cfg, seed = config.servo, config.seed
    # each cycle is a measurement, not a step of the loop: no cycle waits for the next to confirm its lock
    servo_cfg = replace(servo_cfg, lock=replace(servo_cfg.lock, confirm=False))
    target_render = render_target(mesh, camera, T_goal, supersample=target_ss, renderer=own["target_renderer"],
                                  shading_basis_directions=basis_directions(servo_cfg),
                                  basis_renderer=basis_renderer(servo_cfg), second_basis=second_basis(servo_cfg))
    key = servo_cfg.features
    if key not in extractors:
        extractors[key] = build_extractor(servo_cfg.features)
    target = prepare_target(target_render, extractors[key], servo_cfg.working_width_px, servo_cfg.working_height_px,
                            servo_cfg.refine)
    servo = DFBVSServo(target, servo_cfg, extractors[key])
    scene = build_scene(mesh, config.scene, seed=seed)
    rng = np.random.default_rng(seed)
    offsets, px, n, residuals, bases = [], [], [], [], []
    per_point: dict[int, list[np.ndarray]] = {}  # target keypoint -> its error vector on each frame (working px)
    for k in range(frames):
        if same_pose and k > 0:  # every frame at the first pose: only the sensor noise changes
            rng = np.random.default_rng(seed)
        t = rng.normal(size=3)
        w = rng.normal(size=3)
        dp = np.concatenate([t / np.linalg.norm(t) * offset_mm * 1e-3, w / np.linalg.norm(w) * np.deg2rad(offset_deg)])
        T_object_camera = T_goal @ se3_exp(dp)
        frame = render_scene(scene, camera, T_object_camera)  # fresh sensor noise each frame
        if k == 0 and servo_cfg.relight.enabled:  # a first cycle near the goal relights the target: measure after
            servo.step(frame.rgb)
        step = servo.step(frame.rgb)
        if step.status is not StepStatus.OK:
            continue
        d, r_px, r_vec = settle_offset(step, servo, inverse(T_object_camera) @ T_goal)
        for i, r_i in zip(step.correspondences.index_target, r_vec):
            per_point.setdefault(int(i), []).append(r_i)
        offsets.append(d)
        if servo.lighting is not None:
            residuals.append(servo.lighting.residual_levels)
            bases.append(servo.lighting.basis)
        px.append(r_px)
        n.append(step.n_inliers)
    if not offsets:
        return {"variant": name, "error": "no usable cycle"}
    d = np.array(offsets)
    per_frame_mm = np.linalg.norm(d[:, :3], axis=1) * 1e3
    per_frame_deg = np.rad2deg(np.linalg.norm(d[:, 3:], axis=1))
    mean = d.mean(axis=0)
    r_all = np.concatenate(px)  # |r| of every inlier of every frame
    # each point's mean error over the frames it was measured on (its bias): their mean is the shift every patch
    # shares, their spread what differs from patch to patch
    point_bias = np.array([np.mean(v, axis=0) for v in per_point.values() if len(v) >= max(1, len(d) // 2)])
    return {"variant": name, "frames": len(d), "inliers": float(np.mean(n)),
            "measurement_err_px_mean": float(np.mean(r_all)), "measurement_err_px_p90": float(np.percentile(r_all, 90)),
            "frame_mm_median": float(np.median(per_frame_mm)), "frame_deg_median": float(np.median(per_frame_deg)),
            "bias_mm": float(np.linalg.norm(mean[:3]) * 1e3), "bias_deg": float(np.rad2deg(np.linalg.norm(mean[3:]))),
            "relight_residual_levels": float(np.median(residuals)) if residuals else None,
            "relight_second_basis_share": float(np.mean(bases)) if bases else None,
            "point_bias_mean_px": point_bias.mean(axis=0).round(3).tolist() if len(point_bias) else None,
            "point_bias_spread_px": point_bias.std(axis=0).round(3).tolist() if len(point_bias) else None}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=6)
    ap.add_argument("--offset-mm", type=float, default=0.5)
    ap.add_argument("--same-pose", action="store_true", help="all frames at one pose: noise only")
    ap.add_argument("--offset-deg", type=float, default=0.15)
    ap.add_argument("--variant", nargs=2, action="append", metavar=("NAME", "OVERRIDES"), required=True)
    args = ap.parse_args()
    extractors: dict = {}
    for name, spec in args.variant:
        print(json.dumps(run_variant(name, spec, args.frames, args.offset_mm, args.offset_deg,
                                     extractors, args.same_pose)), flush=True)


if __name__ == "__main__":
    main()
