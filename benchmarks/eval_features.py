"""Evaluate every extractor x matcher x rejector combination on image pairs with ground truth.

``--pairs rendered`` (default): for each built-in object ("bracket", "gear", "connector") the target is the
clean CAD render at the default goal (``GoalConfig()``: 0.22 m, az 30 deg, el 60 deg) and the current image
is the cluttered scene with the sim-to-real gap (``SceneConfig()``: table texture, distractors, changed
lights and object colour, exposure, vignetting, blur, noise) seen from a seeded offset of the goal: a
translation in a random direction, a rotation about a random axis and an in-plane rotation (roll about the
current optical axis), resampled until the object's origin projects 50 px inside the image and >= 60 % of
the target's surface points fall inside the current image. Offsets (see ``RENDERED_OFFSETS``) fall in three
bins: ``small`` (<= 5 cm, <= 10 deg, no in-plane turn), ``large`` (up to 10 cm / 30 deg) and ``in-plane``
(in-plane rotation >= 45 deg, up to 90 deg).

Ground truth of a correspondence (``true_current_px``): the target keypoint is unprojected with the target
depth ``Z*`` (nearest pixel, :func:`dfbvs.estimation.target_points_m`), moved into the current camera
(``inverse(T_object_current) @ T_object_goal``) and projected; it is visible when it lies inside the image and
the current render's depth at the nearest pixel agrees within 2 mm (otherwise it is occluded). A match is
correct when the current keypoint is within 2 px of that projection; target keypoints without depth
(background) or whose point is hidden or outside the current image are incorrect by definition.

``--pairs synthetic``: a textured 320x240 image (target) and the same image warped by a known homography
(current) with in-plane rotation 0-90 deg, scale 0.85-1.2, perspective and shift, plus sensor noise and a
brightness gain on the current image. Ground truth: ``uv_current = H(uv_target)``. PnP is not evaluated
(no depth).

Reported per combination: keypoints, matches, precision (share of matches within 2 px of the truth),
inliers after rejection and their precision, time per image (extraction at 320x240, median) and per
match / rejection (mean). Extraction is done once per image and extractor; matching once per pair and
matcher. Usage:

    python benchmarks/eval_features.py --out docs/features-eval.md                 # rendered pairs
    python benchmarks/eval_features.py --pairs synthetic --num-pairs 6 --out docs/features-eval.md

``--out`` replaces only the section of that kind of pair in the file (the other section is kept).
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from _feature_pairs import apply_homography, textured_image  # noqa: E402
from dfbvs.estimation import TargetGeometry, get_rejector, target_points_m  # noqa: E402
from dfbvs.features import available_extractors, get_extractor  # noqa: E402
from dfbvs.matching import get_matcher  # noqa: E402

TOL_PX = 2.0  # a correspondence is correct within this distance of the truth
NEAR_PX = 5.0  # within this distance it is a near miss (localisation), beyond it a gross outlier
DEPTH_TOL_M = 0.002  # visibility: current render depth vs. transformed target point
RENDERED_OBJECTS = ("bracket", "gear", "connector")
RENDERED_EXTRACTORS = ("aliked", "aliked-n16rot", "disk", "orb", "sift")

#: (translation mm, rotation deg about a random axis, in-plane rotation deg) of the current camera from the goal
RENDERED_OFFSETS: tuple[tuple[float, float, float], ...] = (
    (10.0, 3.0, 0.0), (30.0, 5.0, 0.0), (50.0, 8.0, 0.0), (50.0, 10.0, 0.0),  # small
    (70.0, 15.0, 0.0), (80.0, 20.0, 0.0), (100.0, 25.0, 0.0), (100.0, 30.0, 0.0),  # large
    (20.0, 5.0, 45.0), (30.0, 5.0, 60.0), (40.0, 8.0, 75.0), (50.0, 10.0, 90.0),  # in-plane
)
BINS = ("small", "large", "in-plane")


def offset_bin(translation_mm: float, rotation_deg: float, inplane_deg: float) -> str:
    if abs(inplane_deg) >= 45.0:
        return "in-plane"
    if translation_mm <= 50.0 and rotation_deg <= 10.0 and abs(inplane_deg) < 45.0:
        return "small"
    return "large"


# --- rendered pairs ----------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class RenderedPair:
    """A clean target render and a cluttered current render of one object, with both camera poses."""

    object_name: str
    label: str
    bin: str
    target: object  # dfbvs.render.target.TargetRender (rgb, depth_m NaN off the object, camera)
    current_rgb: np.ndarray
    current_depth_m: np.ndarray
    T_object_goal: np.ndarray
    T_object_current: np.ndarray

    @property
    def camera(self):
        return self.target.camera

    @property
    def geometry(self) -> TargetGeometry:
        return TargetGeometry(self.target.depth_m, self.target.camera)


def sample_offset(target, T_object_goal: np.ndarray, translation_mm: float, rotation_deg: float,
                  inplane_deg: float, rng: np.random.Generator, margin_px: float = 50.0,
                  min_inside: float = 0.6) -> np.ndarray:
    """``T_goal_current``: ``translation_mm`` in a random direction, ``rotation_deg`` about a random axis, then
    ``inplane_deg`` about the current optical axis; resampled until the object stays in view."""
    from dfbvs.geometry import inverse, make_pose, so3_exp, transform_points

    cam = target.camera
    vv, uu = np.nonzero(np.isfinite(target.depth_m))
    uv = np.column_stack([uu, vv]).astype(np.float64)[::7]
    p_goal = cam.unproject(uv, target.depth_m[vv, uu][::7].astype(np.float64))
    roll = make_pose(so3_exp(np.array([0.0, 0.0, np.deg2rad(inplane_deg)])))
    for _ in range(2000):
        d, a = rng.normal(size=3), rng.normal(size=3)
        T_goal_current = make_pose(so3_exp(a / np.linalg.norm(a) * np.deg2rad(rotation_deg)),
                                   d / np.linalg.norm(d) * translation_mm * 1e-3) @ roll
        T_current_goal = inverse(T_goal_current)
        centre = (inverse(T_object_goal @ T_goal_current) @ np.array([0.0, 0.0, 0.0, 1.0]))[:3]
        if centre[2] <= 0 or not cam.in_image(cam.project(centre), margin_px)[0]:
            continue
        p = transform_points(T_current_goal, p_goal)
        if np.all(p[:, 2] > 0) and cam.in_image(cam.project(p)).mean() >= min_inside:
            return T_goal_current
    raise ValueError(f"no offset of {translation_mm} mm / {rotation_deg} deg / roll {inplane_deg} deg keeps "
                     "the object in view")


def render_pair(object_name: str, translation_mm: float, rotation_deg: float, inplane_deg: float = 0.0,
                seed: int = 0, target=None, mesh=None) -> RenderedPair:
    """Target = clean CAD render at the default goal; current = cluttered scene with the sim-to-real gap
    (scene and offset drawn from ``seed``)."""
    from dfbvs.camera import Camera
    from dfbvs.render import load_builtin
    from dfbvs.render.scene import SceneConfig, build_scene, render_scene
    from dfbvs.render.target import render_target
    from dfbvs.sim.episode import GoalConfig

    mesh = mesh if mesh is not None else load_builtin(object_name)
    T_object_goal = GoalConfig().T_object_camera()
    target = target if target is not None else render_target(mesh, Camera.default(), T_object_goal)
    rng = np.random.default_rng([seed, int(translation_mm), int(rotation_deg * 10), int(inplane_deg)])
    T_goal_current = sample_offset(target, T_object_goal, translation_mm, rotation_deg, inplane_deg, rng)
    T_object_current = T_object_goal @ T_goal_current
    out = render_scene(build_scene(mesh, SceneConfig(), seed=seed), target.camera, T_object_current)
    label = f"{object_name} {translation_mm:.0f} mm / {rotation_deg:.0f} deg / in-plane {inplane_deg:.0f} deg"
    return RenderedPair(object_name, label, offset_bin(translation_mm, rotation_deg, inplane_deg), target,
                        out.rgb, out.depth_m, T_object_goal, T_object_current)


def true_current_px(pair: RenderedPair, uv_target_px: np.ndarray, depth_tol_m: float = DEPTH_TOL_M) -> np.ndarray:
    """(N, 2) where each target pixel's surface point appears in the current image; NaN rows where the target
    has no depth (background), the point is behind the camera, outside the image or occluded."""
    from dfbvs.estimation import sample_depth
    from dfbvs.geometry import inverse, transform_points

    cam = pair.camera
    uv_t = np.asarray(uv_target_px, dtype=np.float64).reshape(-1, 2)
    p_goal = target_points_m(uv_t, pair.target.depth_m, cam)
    T_current_goal = inverse(pair.T_object_current) @ pair.T_object_goal
    p_cur = transform_points(T_current_goal, p_goal)
    out = np.full((len(uv_t), 2), np.nan)
    ok = np.all(np.isfinite(p_cur), axis=1) & (np.nan_to_num(p_cur[:, 2]) > 1e-6)
    if not ok.any():
        return out
    uv = cam.project(p_cur[ok])
    z = sample_depth(pair.current_depth_m, uv)
    visible = cam.in_image(uv) & np.isfinite(z) & (np.abs(z - p_cur[ok, 2]) <= depth_tol_m)
    idx = np.flatnonzero(ok)[visible]
    out[idx] = uv[visible]
    return out


def correct_matches(pair: RenderedPair, corr, tol_px: float = TOL_PX) -> np.ndarray:
    """Boolean (M,): correspondences whose current keypoint is within ``tol_px`` of the truth."""
    truth = true_current_px(pair, corr.uv_target_px)
    err = np.linalg.norm(corr.uv_current_px - truth, axis=1)
    return np.isfinite(err) & (err < tol_px)


def rendered_pairs(objects=RENDERED_OBJECTS, offsets=RENDERED_OFFSETS, seed: int = 0) -> list[RenderedPair]:
    from dfbvs.camera import Camera
    from dfbvs.render import load_builtin
    from dfbvs.render.target import render_target
    from dfbvs.sim.episode import GoalConfig

    pairs = []
    for i, name in enumerate(objects):
        mesh = load_builtin(name)
        target = render_target(mesh, Camera.default(), GoalConfig().T_object_camera())
        for j, (t_mm, r_deg, roll_deg) in enumerate(offsets):
            pairs.append(render_pair(name, t_mm, r_deg, roll_deg, seed=seed + 100 * i + j, target=target,
                                     mesh=mesh))
    return pairs


# --- synthetic pairs ---------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class SyntheticPair:
    current_rgb: np.ndarray
    target_rgb: np.ndarray
    H_current_target: np.ndarray
    label: str
    bin: str = "all"


def synthetic_pairs(num_pairs: int, seed: int = 0) -> list[SyntheticPair]:
    import cv2

    rng = np.random.default_rng(seed)
    pairs = []
    for i in range(num_pairs):
        target = textured_image(seed=100 + i)
        h, w = target.shape[:2]
        c = np.array([(w - 1) / 2, (h - 1) / 2])
        angle = np.deg2rad(90.0 * i / max(num_pairs - 1, 1))  # 0..90 deg in-plane
        s = rng.uniform(0.85, 1.2)
        A = np.array([[s * np.cos(angle), -s * np.sin(angle), 0], [s * np.sin(angle), s * np.cos(angle), 0], [0, 0, 1]])
        P = np.array([[1, 0, 0], [0, 1, 0], [rng.uniform(-4e-4, 4e-4), rng.uniform(-4e-4, 4e-4), 1]])
        T1 = np.array([[1, 0, -c[0]], [0, 1, -c[1]], [0, 0, 1]])
        T2 = np.array([[1, 0, c[0] + rng.uniform(-15, 15)], [0, 1, c[1] + rng.uniform(-10, 10)], [0, 0, 1]])
        H = T2 @ P @ A @ T1
        H /= H[2, 2]
        current = cv2.warpPerspective(target, H, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                                      borderValue=(60, 60, 60)).astype(np.float32)
        current = current * rng.uniform(0.8, 1.2) + rng.normal(0, 3.0, current.shape)
        pairs.append(SyntheticPair(np.clip(current, 0, 255).astype(np.uint8), target, H,
                                   f"rot {np.rad2deg(angle):.0f} deg"))
    return pairs


# --- evaluation --------------------------------------------------------------------------------------------
def _target_rgb(pair) -> np.ndarray:
    return pair.target.rgb if isinstance(pair, RenderedPair) else pair.target_rgb


def _error_px(pair, corr) -> np.ndarray:
    """(M,) distance of each current keypoint to the truth; inf where there is no truth."""
    truth = true_current_px(pair, corr.uv_target_px) if isinstance(pair, RenderedPair) \
        else apply_homography(pair.H_current_target, corr.uv_target_px)
    return np.nan_to_num(np.linalg.norm(corr.uv_current_px - truth, axis=1), nan=np.inf)


def _matchers_for(ex_name: str) -> list[str]:
    names = ["mnn", "ratio"]
    if (ex_name.startswith("aliked") and ex_name != "aliked-t16") or ex_name == "disk":
        names.append("lightglue")  # weights for 128-D ALIKED and DISK descriptors
    return names


def evaluate(pairs, extractors, rejectors, threads: int, log=print) -> list[dict]:
    """One row per (extractor, matcher, rejector) with per-pair statistics in ``row['pairs']``."""
    import cv2

    rows = []
    for ex_name in extractors:
        extra = {"num_threads": threads} if ex_name not in ("orb", "sift", "akaze") else {}
        ex = get_extractor(ex_name, **extra)
        ex(_target_rgb(pairs[0]))  # warm-up
        cache: dict[int, object] = {}  # id(image) -> Features: each image is extracted once
        t_ex: list[float] = []

        def extract(image, cache=cache, ex=ex, t_ex=t_ex):
            if id(image) not in cache:
                t0 = time.perf_counter()
                cache[id(image)] = ex(image)
                t_ex.append(time.perf_counter() - t0)
            return cache[id(image)]

        feats = [(extract(p.current_rgb), extract(_target_rgb(p))) for p in pairs]
        t_extract_ms = 1e3 * float(np.median(t_ex))
        for m_name in _matchers_for(ex_name):
            extra = {"features": "disk" if ex_name == "disk" else "aliked", "num_threads": threads} \
                if m_name == "lightglue" else {}
            matcher = get_matcher(m_name, **extra)
            matcher(*feats[0])  # warm-up
            matched = []
            for (fc, ft), pair in zip(feats, pairs):
                t0 = time.perf_counter()
                corr = matcher(fc, ft)
                matched.append((corr, 1e3 * (time.perf_counter() - t0), _error_px(pair, corr)))
            for r_name in rejectors:
                rejector = get_rejector(r_name)
                per_pair = []
                for (fc, _ft), pair, (corr, t_match, err) in zip(feats, pairs, matched):
                    good = err < TOL_PX
                    t0 = time.perf_counter()
                    try:
                        inl = (rejector(corr, pair.geometry) if r_name == "pnp" else rejector(corr)).inlier_mask
                        error = 0
                    except cv2.error:  # OpenCV's USAC can assert on degenerate samples: count as no model
                        inl, error = np.zeros(len(corr), bool), 1
                    t_reject = 1e3 * (time.perf_counter() - t0)
                    per_pair.append({"bin": pair.bin, "label": pair.label, "keypoints": len(fc),
                                     "matches": len(corr), "correct": int(good.sum()), "inliers": int(inl.sum()),
                                     "correct_inliers": int(good[inl].sum()),
                                     "near_inliers": int((err[inl] < NEAR_PX).sum()), "match_ms": t_match,
                                     "reject_ms": t_reject, "cv2_errors": error})
                row = {"extractor": ex_name, "matcher": m_name, "rejector": r_name, "extract_ms": t_extract_ms,
                       "pairs": per_pair}
                rows.append(row)
                s = summarize(per_pair)
                log(f"{ex_name:13s} {m_name:9s} {r_name:11s} kp {s['keypoints']:5.0f} matches {s['matches']:5.1f} "
                    f"prec {s['precision']:.3f} inliers {s['inliers']:5.1f} inlier-prec {s['inlier_precision']:.3f}"
                    f" | extract {t_extract_ms:.0f} ms, match {s['match_ms']:.1f} ms, reject {s['reject_ms']:.1f} ms"
                    + (f" | {s['cv2_errors']} OpenCV errors" if s["cv2_errors"] else ""))
    return rows


def summarize(per_pair: list[dict], bin_name: str | None = None) -> dict:
    """Means over pairs of counts and times; precisions pooled over pairs (correct / total), NaN if none."""
    ps = [p for p in per_pair if bin_name is None or p["bin"] == bin_name]
    if not ps:
        return {}
    total = {k: float(sum(p.get(k, 0) for p in ps))
             for k in ("matches", "correct", "inliers", "correct_inliers", "near_inliers")}
    s = {k: float(np.mean([p[k] for p in ps])) for k in ("keypoints", "matches", "inliers", "correct_inliers",
                                                          "match_ms", "reject_ms")}
    s["precision"] = total["correct"] / total["matches"] if total["matches"] else float("nan")
    s["inlier_precision"] = total["correct_inliers"] / total["inliers"] if total["inliers"] else float("nan")
    s["inlier_precision_5px"] = total["near_inliers"] / total["inliers"] if total["inliers"] else float("nan")
    s["n"] = len(ps)
    s["cv2_errors"] = int(sum(p.get("cv2_errors", 0) for p in ps))
    return s


# --- report ------------------------------------------------------------------------------------------------
def _f(x: float, fmt: str) -> str:
    return "-" if not np.isfinite(x) else format(x, fmt)


def rendered_section(rows, pairs, command: str, threads: int, wall_s: float) -> list[str]:
    counts = {b: sum(p.bin == b for p in pairs) for b in BINS}
    objects = sorted({p.object_name for p in pairs}, key=RENDERED_OBJECTS.index)
    lines = [
        "## Rendered pairs (clean CAD target vs. cluttered scene with the sim-to-real gap)", "",
        f"Produced by `{command}` on a 2-core CPU shared with a running benchmark (torch {threads} thread, "
        f"no GPU), 320x240 images, in {wall_s / 60:.1f} min.", "",
        f"Pairs: {len(pairs)} = {len(objects)} objects ({', '.join(objects)}) x {len(pairs) // len(objects)} "
        "offsets. Target: the object alone, clean CAD render at the default goal (0.22 m, az 30 deg, "
        "el 60 deg; the object covers 20-35 % of the image). Current: `SceneConfig()` scene (table texture, "
        "6 distractors, sim-to-real gap: light direction/intensity, object colour and specularity, exposure, "
        "vignetting, blur 0.6 px, noise 2 grey levels), a different scene seed per pair, seen from a "
        "seeded offset of the goal (translation in a random direction, rotation about a random axis, then "
        "in-plane rotation), resampled until the object stays in view. Offsets (mm / deg / in-plane deg): "
        + ", ".join(f"{t:.0f} / {r:.0f} / {i:.0f}" for t, r, i in RENDERED_OFFSETS)
        + f"; bins: small (<= 5 cm, <= 10 deg, {counts['small']} pairs), large (up to 10 cm / 30 deg, "
        f"{counts['large']} pairs), in-plane (45-90 deg in-plane rotation, {counts['in-plane']} pairs).", "",
        "Ground truth: each target keypoint is unprojected with the target depth Z* (nearest pixel), moved "
        "into the current camera with the known poses and projected; it must be inside the image and "
        "visible (current render depth within 2 mm, else occluded). A match is correct when the current "
        "keypoint is within 2 px of that projection; target keypoints on the background (no depth) are "
        "incorrect by definition.", "",
        "Columns: keypoints in the current image, matches per pair, precision (correct / matches, pooled over "
        "pairs), inliers per pair after rejection and their precision (pooled), the share of inliers within "
        "5 px of the truth (the rest are gross outliers; 2-5 px are near misses of the keypoint "
        "localisation), then inliers / inlier precision (2 px) per bin, median extraction time per 320x240 image, "
        "mean match and rejection time per "
        "pair. Rejectors with their default settings: `fundamental` MAGSAC++ 1 px Sampson, `homography` "
        "MAGSAC++ 3 px, `pnp` MAGSAC++ 2 px reprojection with the target's 3D points from Z* (only target "
        "keypoints with depth can be inliers). `lightglue` only for 128-D ALIKED and DISK descriptors "
        "(published weights; `aliked-n16rot` reuses the ALIKED weights). `keypointnet` is not evaluated: "
        "no KP2D checkpoint ships with dfbvs (the user must supply an official v0-v4 file).", "",
        "| extractor | matcher | rejector | keypoints | matches | precision | inliers | inlier precision | "
        "inlier prec. 5 px | small: inliers / prec | large: inliers / prec | in-plane: inliers / prec | "
        "extract ms/img | match ms | reject ms |", "|" + "---|" * 15]
    for row in rows:
        s = summarize(row["pairs"])
        cells = [row["extractor"], row["matcher"], row["rejector"], f"{s['keypoints']:.0f}", f"{s['matches']:.0f}",
                 _f(s["precision"], ".2f"), f"{s['inliers']:.0f}", _f(s["inlier_precision"], ".2f"),
                 _f(s["inlier_precision_5px"], ".2f")]
        for b in BINS:
            sb = summarize(row["pairs"], b)
            cells.append(f"{sb['inliers']:.0f} / {_f(sb['inlier_precision'], '.2f')}" if sb else "-")
        cells += [f"{row['extract_ms']:.0f}", f"{s['match_ms']:.1f}", f"{s['reject_ms']:.1f}"]
        lines.append("| " + " | ".join(cells) + " |")
    errors = [f"{r['extractor']} + {r['matcher']} + {r['rejector']}: {summarize(r['pairs'])['cv2_errors']}"
              for r in rows if summarize(r["pairs"])["cv2_errors"]]
    if errors:
        lines += ["", "OpenCV raised an error instead of returning a status (counted as 0 inliers) in: "
                  + "; ".join(errors) + " pair(s)."]
    return lines


def synthetic_section(rows, command: str, threads: int) -> list[str]:
    lines = [
        "## Synthetic pairs (textured image vs. its homography warp)", "",
        f"Produced by `{command}` on a 2-core CPU (torch {threads} threads, no GPU), 320x240 images.", "",
        "Pairs: a textured image and its warp by a known homography (in-plane rotation 0-90 deg, scale "
        "0.85-1.2, perspective, shift), with brightness gain and Gaussian noise (std 3 grey levels) on the "
        "current image. Precision = share of matches within 2 px of the true position (pooled over pairs); "
        "inlier precision = the same among the rejector's inliers. Extraction time is the median per image. "
        "No PnP (no depth). A planar, fully textured scene: it measures descriptor quality under rotation "
        "and scale, not the object-vs-clutter problem of the rendered pairs.", "",
        "| extractor | matcher | rejector | keypoints | matches | precision | inliers | inlier precision |"
        " extract ms/img | match ms | reject ms |", "|" + "---|" * 11]
    for row in rows:
        s = summarize(row["pairs"])
        lines.append(f"| {row['extractor']} | {row['matcher']} | {row['rejector']} | {s['keypoints']:.0f} | "
                     f"{s['matches']:.0f} | {_f(s['precision'], '.2f')} | {s['inliers']:.0f} | "
                     f"{_f(s['inlier_precision'], '.2f')} | {row['extract_ms']:.0f} | {s['match_ms']:.1f} | "
                     f"{s['reject_ms']:.1f} |")
    return lines


TITLE = "# Features, matching and rejection: evaluation"
MARK = "<!-- section: {} -->"


def write_section(path: Path, kind: str, lines: list[str]) -> None:
    """Replace the ``kind`` section of ``path``, keeping the others (e.g. hand-written ``findings``); order:
    rendered, any other section, synthetic."""
    sections = {}
    if path.is_file():
        for m in re.finditer(r"<!-- section: ([\w-]+) -->\n(.*?)(?=<!-- section: |\Z)", path.read_text(), re.S):
            sections[m.group(1)] = m.group(2).rstrip("\n")
    sections[kind] = "\n".join(lines)
    order = ["rendered"] + [k for k in sections if k not in ("rendered", "synthetic")] + ["synthetic"]
    out = [TITLE, ""]
    for k in order:
        if k in sections:
            out += [MARK.format(k), sections[k], ""]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(out))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", choices=["rendered", "synthetic"], default="rendered")
    parser.add_argument("--num-pairs", type=int, default=8, help="synthetic pairs (rendered: objects x offsets)")
    parser.add_argument("--objects", nargs="*", default=list(RENDERED_OBJECTS), help="rendered pairs: objects")
    parser.add_argument("--extractors", nargs="*", default=None)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (extractors and LightGlue)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    t_start = time.perf_counter()
    if args.pairs == "rendered":
        extractors = args.extractors or list(RENDERED_EXTRACTORS)
        pairs = rendered_pairs(tuple(args.objects), seed=args.seed)
        rejectors = ("none", "fundamental", "homography", "pnp")
    else:
        extractors = args.extractors or [n for n in available_extractors() if n != "keypointnet"]
        pairs = synthetic_pairs(args.num_pairs, seed=args.seed)
        rejectors = ("none", "fundamental", "homography")
    print(f"{len(pairs)} {args.pairs} pairs ready in {time.perf_counter() - t_start:.1f} s", flush=True)
    rows = evaluate(pairs, extractors, rejectors, args.threads, log=lambda s: print(s, flush=True))
    wall_s = time.perf_counter() - t_start
    print(f"total {wall_s:.0f} s")
    if args.out is not None:
        command = "python " + " ".join(["benchmarks/eval_features.py"] + sys.argv[1:])
        lines = rendered_section(rows, pairs, command, args.threads, wall_s) if args.pairs == "rendered" \
            else synthetic_section(rows, command, args.threads)
        write_section(args.out, args.pairs, lines)


if __name__ == "__main__":
    main()
