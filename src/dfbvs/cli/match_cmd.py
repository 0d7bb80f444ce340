"""``dfbvs match``: extract, match and reject on one image pair; writes a picture and ``matches.json``.

IMAGE_A is the *current* image, IMAGE_B the *target* (for ``--reject pnp``, B's rendered depth ``Z*`` and
camera are given with ``--depth-b`` and ``--meta-b``).

Images are read by :func:`dfbvs.imaging.read_image_rgb8` (16-bit scaled, sides up to 16384 px, else an error) and
matched at a working resolution: an image whose longer side exceeds :data:`WORKING_MAX_SIDE_PX` is downscaled
(aspect kept; said in the output and in matches.json, whose pixels are the working images'). A fitted model whose
inliers are too few to trust (:func:`dfbvs.estimation.trust_status`) has the status ``too_few_inliers_to_trust``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Optional

import numpy as np
import typer

#: images are matched with their longer side at most this (px): the network's memory and time grow with the
#: pixels (a 4000x3000 photo took 20.6 GB and 74 s at full size)
WORKING_MAX_SIDE_PX = 640


def _read_rgb(path: Path, label: str) -> np.ndarray:
    from ..errors import FrameError
    from ..imaging import read_image_rgb8

    try:
        return read_image_rgb8(path, what=label)
    except (FrameError, FileNotFoundError) as exc:
        raise typer.BadParameter(str(exc)) from None


def _read_camera(path: Path):
    from ..camera import Camera

    if not path.is_file():
        raise typer.BadParameter(f"--meta-b {str(path)!r}: no such file")
    try:
        meta = json.loads(path.read_text())
        return Camera.from_dict(meta.get("camera", meta))
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise typer.BadParameter(f"--meta-b {str(path)!r}: expected JSON with camera intrinsics "
                                 f"(fx, fy, cx, cy, width_px, height_px) at the top level or under 'camera': "
                                 f"{exc}") from None


def draw_matches(current: np.ndarray, target: np.ndarray, uv_current_px: np.ndarray, uv_target_px: np.ndarray,
                 inlier_mask: np.ndarray) -> np.ndarray:
    """Side-by-side RGB picture (current left, target right): inliers green, rejected red."""
    import cv2

    h = max(current.shape[0], target.shape[0])
    canvas = np.zeros((h, current.shape[1] + target.shape[1], 3), np.uint8)
    canvas[: current.shape[0], : current.shape[1]] = current
    canvas[: target.shape[0], current.shape[1]:] = target
    offset = np.array([current.shape[1], 0.0])
    shift = 4  # draw with 1/16 px precision; pixel centres are integers in OpenCV's convention too
    order = np.argsort(inlier_mask, kind="stable")  # rejected first, inliers on top
    for i in order:
        colour = (0, 200, 0) if inlier_mask[i] else (230, 30, 30)
        a = tuple(int(round(c * 16)) for c in uv_current_px[i])
        b = tuple(int(round(c * 16)) for c in uv_target_px[i] + offset)
        cv2.line(canvas, a, b, colour, 1, cv2.LINE_AA, shift)
        cv2.circle(canvas, a, 2 * 16, colour, 1, cv2.LINE_AA, shift)
        cv2.circle(canvas, b, 2 * 16, colour, 1, cv2.LINE_AA, shift)
    return canvas


def register(app: typer.Typer) -> None:
    from ._options import extractor_names, matcher_names, rejector_names
    from ._paths import out_dir_callback

    @app.command("match")
    def match(
        image_a: Path = typer.Argument(..., help="Current image (png/jpg)."),
        image_b: Path = typer.Argument(..., help="Target image (png/jpg), e.g. a render of the CAD model."),
        out: Path = typer.Option(..., "--out", callback=out_dir_callback, help="Output directory (created)."),
        features: str = typer.Option("aliked", help=f"Feature extractor: {extractor_names()}."),
        matcher: str = typer.Option("mnn", help=f"Matcher: {matcher_names()}."),
        reject: str = typer.Option("fundamental", help=f"Rejector: {rejector_names()}."),
        threshold_px: Optional[float] = typer.Option(None, help="Inlier threshold of the rejector (px)."),
        max_keypoints: int = typer.Option(500, help="Top-K keypoints per image."),
        checkpoint: Optional[Path] = typer.Option(None, help="KP2D checkpoint for --features keypointnet."),
        depth_b: Optional[Path] = typer.Option(None, help="Target depth Z* (.npy, metres, NaN background) for pnp."),
        meta_b: Optional[Path] = typer.Option(None, help="Target camera JSON (Camera.to_dict, or under 'camera')."),
    ) -> None:
        """Match IMAGE_A (current) to IMAGE_B (target); write match.png (inliers green, rejected red) and
        matches.json into --out."""
        import cv2

        from ..errors import CalibrationError
        from ..estimation import TargetGeometry, available_rejectors, get_rejector, trust_status
        from ..features import available_extractors, get_extractor
        from ..imaging import fit_within, resize_nearest
        from ..matching import available_matchers, get_matcher

        if features.lower() not in available_extractors():
            raise typer.BadParameter(f"--features {features!r}: choose one of {available_extractors()}")
        if matcher.lower() not in available_matchers():
            raise typer.BadParameter(f"--matcher {matcher!r}: choose one of {available_matchers()}")
        if reject.lower() not in available_rejectors():
            raise typer.BadParameter(f"--reject {reject!r}: choose one of {available_rejectors()}")
        current_full = _read_rgb(image_a, "IMAGE_A")
        target_full = _read_rgb(image_b, "IMAGE_B")
        current, scale_a = fit_within(current_full, WORKING_MAX_SIDE_PX)
        target, scale_b = fit_within(target_full, WORKING_MAX_SIDE_PX)
        resized = [f"{label} {full.shape[1]}x{full.shape[0]} downscaled to {img.shape[1]}x{img.shape[0]}"
                   for label, full, img in (("IMAGE_A", current_full, current), ("IMAGE_B", target_full, target))
                   if img is not full]
        if resized:
            typer.echo(f"{'; '.join(resized)} (working resolution: longer side at most {WORKING_MAX_SIDE_PX} px; "
                       f"pixels in matches.json are the working images')")
        geometry = None
        if reject.lower() == "pnp":
            if depth_b is None or meta_b is None:
                raise typer.BadParameter("--reject pnp needs --depth-b depth.npy and --meta-b meta.json")
            if not depth_b.is_file():
                raise typer.BadParameter(f"--depth-b {str(depth_b)!r}: no such file")
            depth = np.load(depth_b)
            if depth.shape != target_full.shape[:2]:
                raise typer.BadParameter(f"--depth-b shape {depth.shape} differs from IMAGE_B "
                                         f"{target_full.shape[:2]}")
            cam_b = _read_camera(meta_b)
            if (cam_b.width_px, cam_b.height_px) != (target_full.shape[1], target_full.shape[0]):
                raise typer.BadParameter(f"--meta-b camera is {cam_b.width_px}x{cam_b.height_px}, IMAGE_B is "
                                         f"{target_full.shape[1]}x{target_full.shape[0]}")
            depth = resize_nearest(depth, target.shape[1], target.shape[0])  # Z* at the working size, unblended
            try:
                cam_b = cam_b.rescaled(target.shape[1], target.shape[0])
                cam_a = cam_b.rescaled(current.shape[1], current.shape[0])
            except CalibrationError as exc:
                raise typer.BadParameter(f"--reject pnp: IMAGE_A must come from IMAGE_B's camera: {exc}") from None
            geometry = TargetGeometry(depth, cam_b, cam_a)

        settings: dict = {"max_keypoints": max_keypoints}
        if features.lower() == "keypointnet":
            settings["checkpoint_path"] = None if checkpoint is None else str(checkpoint)
        try:
            extractor = get_extractor(features, **settings)
            match_settings = {}
            if matcher.lower() == "lightglue":
                match_settings["features"] = "disk" if features.lower() == "disk" else "aliked"
            matcher_obj = get_matcher(matcher, **match_settings)
            rejector = get_rejector(reject, None, **({} if threshold_px is None or reject == "none"
                                                     else {"threshold_px": threshold_px}))
        except (ValueError, FileNotFoundError) as exc:
            raise typer.BadParameter(str(exc)) from None

        t0 = time.perf_counter()
        f_current = extractor(current)
        t1 = time.perf_counter()
        f_target = extractor(target)
        t2 = time.perf_counter()
        try:
            corr = matcher_obj(f_current, f_target)
        except ValueError as exc:
            raise typer.BadParameter(str(exc)) from None
        t3 = time.perf_counter()
        result = rejector(corr, geometry)
        t4 = time.perf_counter()
        status, reason = trust_status(result, len(corr))

        out.mkdir(parents=True, exist_ok=True)
        picture = draw_matches(current, target, corr.uv_current_px, corr.uv_target_px, result.inlier_mask)
        cv2.imwrite(str(out / "match.png"), picture[:, :, ::-1])
        report = {
            "image_current": str(image_a), "image_target": str(image_b),
            "image_current_size": [current_full.shape[1], current_full.shape[0]],
            "image_target_size": [target_full.shape[1], target_full.shape[0]],
            "working_current_size": [current.shape[1], current.shape[0]],
            "working_target_size": [target.shape[1], target.shape[0]],
            "working_max_side_px": WORKING_MAX_SIDE_PX, "scale_current": scale_a, "scale_target": scale_b,
            "features": features, "matcher": matcher, "reject": reject,
            "extractor_config": {k: v for k, v in vars(extractor.config).items()},
            "rejector_config": ({} if rejector.config is None else
                                {k: (v.value if hasattr(v, "value") else v) for k, v in vars(rejector.config).items()}),
            "num_keypoints_current": len(f_current), "num_keypoints_target": len(f_target),
            "num_matches": len(corr), "num_inliers": result.num_inliers, "status": status,
            "model_status": result.status.value, "reason": reason,
            "model": result.model_dict(),
            "time_ms": {"extract_current": 1e3 * (t1 - t0), "extract_target": 1e3 * (t2 - t1),
                        "match": 1e3 * (t3 - t2), "reject": 1e3 * (t4 - t3)},
            "matches": [{"uv_current_px": corr.uv_current_px[i].tolist(), "uv_target_px": corr.uv_target_px[i].tolist(),
                         "index_current": int(corr.index_current[i]), "index_target": int(corr.index_target[i]),
                         "score": float(corr.scores[i]), "inlier": bool(result.inlier_mask[i])}
                        for i in range(len(corr))],
        }
        (out / "matches.json").write_text(json.dumps(report, indent=1) + "\n")
        typer.echo(f"{len(f_current)}/{len(f_target)} keypoints, {len(corr)} matches, {result.num_inliers} inliers "
                   f"({reject}: {status}{': ' + reason if reason else ''}); wrote {out / 'match.png'} and "
                   f"{out / 'matches.json'}")
