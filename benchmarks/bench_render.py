"""Time per frame of the render engine (RGB + depth + ids) for the built-in cluttered scene.

Usage: python benchmarks/bench_render.py [--object gear] [--frames 200] [--width 320 --height 240]
                                         [--renderer moderngl | --renderer blender:samples=16,denoise=false]
Prints the median and 90th percentile of the backend render time and of the full ``render_scene`` call
(backend + sensor effects), for a camera moving slightly between frames (as in a servo loop).
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def main() -> None:
    from dfbvs.camera import Camera
    from dfbvs.geometry import look_at_spherical
    from dfbvs.render import load_builtin
    from dfbvs.render.scene import SceneConfig, build_scene, render_scene

    parser = argparse.ArgumentParser()
    parser.add_argument("--object", default="gear")
    parser.add_argument("--frames", type=int, default=200)
    parser.add_argument("--width", type=int, default=320)
    parser.add_argument("--height", type=int, default=240)
    parser.add_argument("--distractors", type=int, default=SceneConfig().n_distractors)
    parser.add_argument("--antialias", action="store_true", help="multisample the RGB (off in SceneConfig)")
    parser.add_argument("--fingertips", action="store_true")
    parser.add_argument("--renderer", default=SceneConfig().renderer,
                        help="scene renderer spec, e.g. moderngl, blender, blender:samples=16 (make blender)")
    args = parser.parse_args()

    camera = Camera.default().rescaled(args.width, args.height)
    config = SceneConfig(n_distractors=args.distractors, antialias=args.antialias,
                         gripper_fingertips=args.fingertips, renderer=args.renderer)
    mesh = load_builtin(args.object)
    scene = build_scene(mesh, config, seed=0)
    n_tri = sum(len(item.mesh.faces) for item in scene.items)
    render_scene(scene, camera, look_at_spherical(0.3, 30, 60))  # context, shaders and uploads
    backend_ms, total_ms = [], []
    for k in range(args.frames):
        T = look_at_spherical(0.3 + 0.001 * (k % 10), 30 + 0.2 * k, 60)
        t0 = time.perf_counter()
        out = render_scene(scene, camera, T)
        total_ms.append((time.perf_counter() - t0) * 1e3)
        backend_ms.append(out.time_ms)
    print(f"{args.object} scene: {len(scene.items)} items, {n_tri} triangles, {args.width}x{args.height}, "
          f"renderer {args.renderer}, antialias={config.antialias}, {args.frames} frames")
    for name, values in (("backend render (RGB+depth+ids)", backend_ms),
                         ("render_scene incl. sensor effects", total_ms)):
        print(f"  {name}: median {np.median(values):.2f} ms, p90 {np.percentile(values, 90):.2f} ms")


if __name__ == "__main__":
    main()
