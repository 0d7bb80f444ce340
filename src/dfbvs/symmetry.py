"""Object symmetries: goals that are ambiguous up to a rigid motion of the object onto itself.

A symmetry element ``T_object_object_sym`` (4x4, metres) maps the object's surface onto itself:
``p_object = T_object_object_sym @ p_object_sym`` lands on the surface for every surface point. A camera at
``T_object_object_sym @ T_object_goal`` then sees exactly what the goal camera sees, so it has reached the goal
*modulo the symmetry*; errors are reported against the nearest such equivalent (as object-pose benchmarks do).

- :class:`Symmetry`: a finite group of such transforms, the identity first (index 0 = the goal itself).
- :func:`find_symmetries`: discrete rotations of a mesh about candidate axes through its centre of mass,
  checked on sampled surface points (continuous symmetries come out as the finest order tried).
- :data:`BUILTIN_SYMMETRIES` and :func:`symmetry_of`: what the built-in objects are declared to have.
- :func:`pose_error_modulo`: the smallest pose error over the equivalents and which one it was.
- :func:`lock_verdict`: "goal", "symmetric equivalent" or "false lock" for a converged run.

See docs/symmetry.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
from numpy.typing import ArrayLike

from .errors import ConfigError
from .geometry import make_pose, pose_error, so3_exp, so3_log
from .render.mesh import Mesh

#: how an episode picks its object's symmetry (``EpisodeConfig.symmetry``)
SYMMETRY_MODES = ("declared", "auto", "none")


@dataclass(frozen=True, eq=False)
class Symmetry:
    """A finite set of object-frame rigid transforms ``T_object_object_sym`` (K, 4, 4) in metres, the
    identity first. ``note`` says where it comes from (declared, found at which tolerance, approximate).
    Equality is by identity (the transforms are arrays)."""

    transforms: tuple[np.ndarray, ...] = field(default_factory=lambda: (np.eye(4),))
    note: str = "none"
    # the whole object maps onto itself (False: only what dominates its look does, e.g. the gear's teeth but not
    # its holes and glyph): control may then treat every equivalent goal as the goal (DFBVSServo.declare_symmetry)
    exact: bool = True

    def __post_init__(self) -> None:
        ts = tuple(np.asarray(t, dtype=np.float64).reshape(4, 4) for t in self.transforms)
        if not ts or not np.allclose(ts[0], np.eye(4), atol=1e-9):
            raise ValueError("Symmetry.transforms must start with the identity (index 0 = the goal itself)")
        for t in ts:
            R = t[:3, :3]
            if not np.allclose(R.T @ R, np.eye(3), atol=1e-6) or np.linalg.det(R) < 0:
                raise ValueError(f"Symmetry: not a proper rigid transform: {t.tolist()}")
        object.__setattr__(self, "transforms", ts)

    @property
    def order(self) -> int:
        """The number of elements, identity included (1: no symmetry)."""
        return len(self.transforms)

    def reframed(self, scale: float = 1.0, origin_m: ArrayLike = (0.0, 0.0, 0.0)) -> Symmetry:
        """The same symmetry of the part after :func:`dfbvs.render.mesh.reframed` (points ``scale * p - origin_m``):
        each ``[R, t]`` becomes ``[R, R o + scale t - o]``."""
        o = np.asarray(origin_m, dtype=np.float64).reshape(3)
        moved = []
        for T in self.transforms:
            T2 = T.copy()
            T2[:3, 3] = T[:3, :3] @ o + float(scale) * T[:3, 3] - o
            moved.append(T2)
        return Symmetry(tuple(moved), self.note, self.exact)

    @staticmethod
    def none() -> Symmetry:
        """No symmetry: the identity alone."""
        return Symmetry((np.eye(4),), "none")

    @staticmethod
    def discrete_rotations(axis: ArrayLike, n: int, center_m: ArrayLike = (0.0, 0.0, 0.0),
                           note: str | None = None, exact: bool = True) -> Symmetry:
        """The ``n``-fold rotations ``k * 2 pi / n`` (k = 0..n-1) about ``axis`` through ``center_m``."""
        if int(n) < 1:
            raise ValueError(f"Symmetry.discrete_rotations: n must be >= 1, got {n!r}")
        a = np.asarray(axis, dtype=np.float64).reshape(3)
        if np.linalg.norm(a) < 1e-12:
            raise ValueError(f"Symmetry.discrete_rotations: zero axis {a.tolist()}")
        a = a / np.linalg.norm(a)
        c = np.asarray(center_m, dtype=np.float64).reshape(3)
        ts = tuple(_rotation_about(a, 2.0 * np.pi * k / int(n), c) for k in range(int(n)))
        return Symmetry(ts, note if note is not None else f"{int(n)}-fold about {np.round(a, 4).tolist()} "
                        f"through {np.round(c * 1e3, 2).tolist()} mm", exact)

    def equivalent_goals(self, T_object_goal: np.ndarray) -> np.ndarray:
        """(K, 4, 4) ``T_object_object_sym @ T_object_goal``: the goal poses that see the same image."""
        return np.stack([t @ np.asarray(T_object_goal, dtype=np.float64) for t in self.transforms])


def _rotation_about(axis_unit: np.ndarray, angle_rad: float, center_m: np.ndarray) -> np.ndarray:
    R = so3_exp(axis_unit * angle_rad)
    return make_pose(R, center_m - R @ center_m)


def pose_error_modulo(T_object_goal: np.ndarray, T_object_camera: np.ndarray, symmetry: Symmetry,
                      length_scale_m: float = 0.2) -> tuple[float, float, int]:
    """``(translation_m, rotation_rad, index)``: the pose error of the camera to the nearest symmetric
    equivalent ``symmetry.transforms[index] @ T_object_goal`` of the goal (index 0: the goal itself).

    "Nearest" minimises ``translation_m + length_scale_m * rotation_rad`` (a rotation of 1 rad weighs as the
    arc at 0.2 m, a camera-to-object distance); ties go to the lowest index, so the goal itself wins a tie.
    That score is never above the plain ``pose_error``'s."""
    best: tuple[float, float, int] | None = None
    best_score = np.inf
    for k, T_goal_k in enumerate(symmetry.equivalent_goals(T_object_goal)):
        t_m, r_rad = pose_error(T_goal_k, T_object_camera)
        score = t_m + length_scale_m * r_rad
        if score < best_score - 1e-12:
            best, best_score = (t_m, r_rad, k), score
    assert best is not None
    return best


def lock_verdict(converged: bool, translation_error_m: float, rotation_error_rad: float, index: int,
                 tolerance_m: float = 2e-3, tolerance_rad: float = float(np.deg2rad(0.5))) -> str | None:
    """For a converged run: ``"goal"`` (within tolerance of the goal itself), ``"symmetric equivalent"``
    (within tolerance of another equivalent), ``"false lock"`` (beyond it from every equivalent); the errors
    are :func:`pose_error_modulo`'s. ``None`` for a run that did not converge."""
    if not converged:
        return None
    if not (translation_error_m <= tolerance_m and rotation_error_rad <= tolerance_rad):
        return "false lock"
    return "goal" if index == 0 else "symmetric equivalent"


def symmetric_error_fields(symmetry: Symmetry, T_object_goal: np.ndarray, T_object_camera: np.ndarray,
                           converged: bool, lock_tolerance_mm: float = 2.0,
                           lock_tolerance_deg: float = 0.5) -> dict:
    """The episode result's symmetry fields: ``final_translation_error_mm_sym``,
    ``final_rotation_error_deg_sym``, ``symmetric_equivalent`` (index, 0 = the goal), ``symmetry_order`` and
    ``lock`` (:func:`lock_verdict`, None unless converged)."""
    t_m, r_rad, k = pose_error_modulo(T_object_goal, T_object_camera, symmetry)
    return {"final_translation_error_mm_sym": t_m * 1e3, "final_rotation_error_deg_sym": float(np.rad2deg(r_rad)),
            "symmetric_equivalent": k, "symmetry_order": symmetry.order,
            "lock": lock_verdict(converged, t_m, r_rad, k, lock_tolerance_mm * 1e-3,
                                 float(np.deg2rad(lock_tolerance_deg)))}


# --- detection ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SymmetryCheck:
    """One candidate rotation tried by :func:`find_symmetries`: ``axis`` (unit), ``order`` n (rotation by
    2 pi / n), ``quantile_distance_m`` (the ``quantile`` of the rotated samples' distance to the surface; for
    a rotation rejected early on a 300-point subset, the subset's, capped at 4x the tolerance) and whether it
    passed (``<= tolerance_m``)."""

    axis: tuple[float, float, float]
    order: int
    quantile_distance_m: float
    passed: bool


@dataclass(frozen=True, eq=False)
class FoundSymmetry:
    """The result of :func:`find_symmetries`: the group, the centre and tolerance used, every check."""

    symmetry: Symmetry
    center_m: np.ndarray
    tolerance_m: float
    sampling_resolution_m: float  # the same quantile for unrotated samples (the distance measure's floor)
    axis_orders: tuple[tuple[tuple[float, float, float], int, bool], ...]  # (axis, order, continuous)
    checks: tuple[SymmetryCheck, ...]


def _candidate_axes(tm, extra: Sequence[ArrayLike] | None) -> list[np.ndarray]:
    """Principal axes of inertia (of the volume, or of the surface for an open mesh), then the object
    frame's x, y, z (principal axes are arbitrary within a degenerate pair), deduplicated (sign ignored)."""
    if tm.is_volume:
        inertia = tm.moment_inertia
    else:
        pts = tm.triangles_center
        w = tm.area_faces
        c = (w[:, None] * pts).sum(axis=0) / w.sum()
        d = pts - c
        inertia = (w[:, None, None] * (np.einsum("ni,nj->nij", d, d))).sum(axis=0)
    _, vecs = np.linalg.eigh(np.asarray(inertia, dtype=np.float64))
    cands = [vecs[:, i] for i in range(3)] + [np.eye(3)[i] for i in range(3)]
    cands += [np.asarray(a, dtype=np.float64).reshape(3) for a in (extra or [])]
    axes: list[np.ndarray] = []
    for a in cands:
        a = a / np.linalg.norm(a)
        if all(abs(float(a @ b)) < np.cos(np.deg2rad(0.5)) for b in axes):
            axes.append(a)
    return axes


def _close_group(generators: list[np.ndarray], max_elements: int) -> list[np.ndarray]:
    """The group generated by ``generators`` (identity first), elements deduplicated to 1e-6; stops at
    ``max_elements``."""
    elems = [np.eye(4)]
    frontier = [np.eye(4)]
    while frontier and len(elems) < max_elements:
        new = []
        for a in frontier:
            for g in generators:
                p = g @ a
                if not any(np.allclose(p, e, atol=1e-6) for e in elems):
                    elems.append(p)
                    new.append(p)
                    if len(elems) >= max_elements:
                        return elems
        frontier = new
    return elems


def find_symmetries(mesh: Mesh, candidate_axes: Sequence[ArrayLike] | None = None, max_order: int = 36,
                    tolerance_m: float | None = None, quantile: float = 0.998, n_points: int = 3000,
                    seed: int = 0, max_group: int = 360) -> FoundSymmetry:
    """Discrete rotational symmetries of ``mesh`` about axes through its centre of mass (of the surface for
    an open mesh): the principal axes of inertia, the object frame's x, y, z and ``candidate_axes``.

    For each axis and each order n = 2..``max_order``, ``n_points`` surface samples are rotated by 2 pi / n
    and their distance to the surface measured (nearest neighbour among dense surface samples, their spacing
    a few times finer than the tolerance); the rotation is a symmetry when the ``quantile`` of those
    distances is at most ``tolerance_m`` (default: 1 % of the bounding-box diagonal). An axis gets the
    largest passing order n whose divisors all pass; an axis that passes every order is continuous
    (a cylinder) and is approximated by ``max_order`` steps. The group generated by all axes is returned
    (at most ``max_group`` elements: a sphere is truncated, see the note)."""
    import trimesh
    from scipy.spatial import cKDTree

    tm = mesh.to_trimesh()
    diag_m = float(np.linalg.norm(mesh.extent_m))
    tol = 0.01 * diag_m if tolerance_m is None else float(tolerance_m)
    if not tol > 0:
        raise ValueError(f"find_symmetries: tolerance_m must be > 0, got {tolerance_m!r}")
    n_ref = int(np.clip(float(tm.area) / (tol / 3.0) ** 2, 20_000, 150_000))
    ref, _ = trimesh.sample.sample_surface(tm, n_ref, seed=seed)
    pts, _ = trimesh.sample.sample_surface(tm, n_points, seed=seed + 1)
    tree = cKDTree(ref)
    resolution = float(np.quantile(tree.query(pts)[0], quantile))
    center = np.asarray(tm.center_mass if tm.is_volume else (tm.area_faces @ tm.triangles_center) / tm.area,
                        dtype=np.float64)
    allowed = int(np.floor((1.0 - quantile) * n_points))
    n_quick = min(n_points, 300)
    checks: list[SymmetryCheck] = []
    axis_orders: list[tuple[tuple[float, float, float], int, bool]] = []
    generators: list[np.ndarray] = []
    for axis in _candidate_axes(tm, candidate_axes):
        passed: dict[int, bool] = {}
        for n in range(2, int(max_order) + 1):
            T = _rotation_about(axis, 2.0 * np.pi / n, center)
            # exact early reject: more points beyond the tolerance in a subset than the quantile allows
            d = tree.query(pts[:n_quick] @ T[:3, :3].T + T[:3, 3], distance_upper_bound=4.0 * tol)[0]
            if int(np.count_nonzero(d > tol)) > allowed:
                q = float(np.quantile(np.minimum(d, 4.0 * tol), quantile))  # the subset's, capped at 4 tol
            else:
                d = tree.query(pts @ T[:3, :3].T + T[:3, 3])[0]
                q = float(np.quantile(d, quantile))
            passed[n] = q <= tol
            checks.append(SymmetryCheck(tuple(float(x) for x in axis), n, q, passed[n]))  # type: ignore[arg-type]
        ok = [n for n in passed if passed[n] and all(passed[m] for m in passed if n % m == 0)]
        if not ok:
            continue
        order = max(ok)
        continuous = all(passed.values())
        axis_t = (float(axis[0]), float(axis[1]), float(axis[2]))
        axis_orders.append((axis_t, order, continuous))
        generators.append(_rotation_about(axis, 2.0 * np.pi / order, center))
    elems = _close_group(generators, max_group) if generators else [np.eye(4)]
    parts = [f"{n}-fold{' (continuous, approximated)' if cont else ''} about {np.round(a, 3).tolist()}"
             for a, n, cont in axis_orders]
    note = (f"found: {', '.join(parts) if parts else 'none'} through the centre "
            f"{np.round(center * 1e3, 2).tolist()} mm; tolerance {tol * 1e3:.2f} mm at the {quantile:g} quantile"
            f" (sampling floor {resolution * 1e3:.2f} mm)")
    if len(elems) >= max_group and generators:
        note += f"; group truncated at {max_group} elements"
    return FoundSymmetry(Symmetry(tuple(elems), note), center, tol, resolution, tuple(axis_orders), tuple(checks))


def symmetry_residual_m(mesh: Mesh, T_object_object_sym: np.ndarray, quantile: float = 0.998,
                        select: Callable[[np.ndarray], np.ndarray] | None = None, n_points: int = 3000,
                        seed: int = 0) -> tuple[float, float]:
    """How far ``T_object_object_sym`` moves the surface off itself: the ``quantile`` of the distance (m) from
    transformed surface samples to the surface, and the same for untransformed samples (the measure's floor).
    ``select`` (points (N, 3) -> bool mask) restricts the check to a region (e.g. the gear's teeth ring)."""
    import trimesh
    from scipy.spatial import cKDTree

    tm = mesh.to_trimesh()
    ref, _ = trimesh.sample.sample_surface(tm, 100_000, seed=seed)
    pts, _ = trimesh.sample.sample_surface(tm, n_points, seed=seed + 1)
    if select is not None:
        pts = pts[np.asarray(select(pts), dtype=bool)]
    tree = cKDTree(ref)
    T = np.asarray(T_object_object_sym, dtype=np.float64)
    moved = float(np.quantile(tree.query(pts @ T[:3, :3].T + T[:3, 3])[0], quantile))
    return moved, float(np.quantile(tree.query(pts)[0], quantile))


# --- the built-in objects -------------------------------------------------------------------------------
def _gear_teeth() -> int:
    """The built-in gear's tooth count, read from ``make_gear``'s default (no CSG run)."""
    import inspect

    from .render.objects import make_gear

    return int(inspect.signature(make_gear).parameters["n_teeth"].default)


def builtin_symmetries() -> dict[str, Symmetry]:
    """The declared symmetries of the built-in target objects (docs/symmetry.md says why)."""
    n = _gear_teeth()
    gear = Symmetry.discrete_rotations(
        (0.0, 0.0, 1.0), n, (0.0, 0.0, 0.0),
        note=f"declared: {n}-fold about the gear axis (z through the origin), one tooth = {360 / n:g} deg. "
             "Visual, not exact: the teeth repeat, the 6 lightening holes, keyed bore and '20' glyph do not",
        exact=False)
    none = {name: Symmetry((np.eye(4),), "declared: none")
            for name in ("bracket", "connector", "sheet", "housing", "shaft", "clamp")}
    return {"gear": gear, **none}


#: name -> declared :class:`Symmetry` of the built-in targets
BUILTIN_SYMMETRIES: dict[str, Symmetry] = builtin_symmetries()


def symmetry_of(object_name: str | None, mesh: Mesh | None = None, mode: str = "declared") -> Symmetry:
    """The symmetry an episode uses: ``"declared"`` (a built-in's :data:`BUILTIN_SYMMETRIES` entry, none for
    a user mesh: pass ``object_name=None``), ``"auto"`` (:func:`find_symmetries` on ``mesh``) or ``"none"``."""
    if mode not in SYMMETRY_MODES:
        raise ConfigError(f"symmetry must be one of {list(SYMMETRY_MODES)}, got {mode!r}")
    if mode == "none":
        return Symmetry.none()
    if mode == "auto":
        if mesh is None:
            raise ConfigError("symmetry=auto needs the mesh")
        return find_symmetries(mesh).symmetry
    if object_name is not None and object_name in BUILTIN_SYMMETRIES:
        return BUILTIN_SYMMETRIES[object_name]
    return Symmetry((np.eye(4),), "declared: none (not a built-in object; symmetry=auto finds them)")


def rotation_angle_rad(T: np.ndarray) -> float:
    """The rotation angle of a rigid transform (rad), for messages and tests."""
    return float(np.linalg.norm(so3_log(np.asarray(T, dtype=np.float64)[:3, :3])))


def goal_frame_symmetries(symmetry: Symmetry, T_object_goal: np.ndarray) -> tuple[np.ndarray, ...]:
    """The symmetry as transforms ``T_goal_goalk`` between the goal camera and each equivalent goal camera
    ``symmetry.transforms[k] @ T_object_goal`` (identity first): a pose ``T_current_goal`` measured against the
    goal is ``T_current_goal @ T_goal_goalk`` against equivalent ``k``."""
    T_goal_object = np.linalg.inv(np.asarray(T_object_goal, dtype=np.float64))
    return tuple(T_goal_object @ S @ T_object_goal for S in symmetry.transforms)


def nearest_equivalent_pose(T_current_goal: np.ndarray, goal_symmetries: Sequence[np.ndarray],
                            length_scale_m: float = 0.2) -> tuple[np.ndarray, int]:
    """``(T_current_goalk, k)``: the camera's pose against the equivalent goal nearest to it (translation plus
    ``length_scale_m`` x rotation angle, as :func:`pose_error_modulo`). It is the same whichever equivalent a
    measurement of a symmetric object locked on, so a law driven by it never chases the teeth of a gear."""
    T = np.asarray(T_current_goal, dtype=np.float64)
    best, best_k, best_score = T, 0, np.inf
    for k, G in enumerate(goal_symmetries):
        T_k = T @ G
        score = float(np.linalg.norm(T_k[:3, 3])) + length_scale_m * rotation_angle_rad(T_k)
        if score < best_score - 1e-12:
            best, best_k, best_score = T_k, k, score
    return best, best_k
