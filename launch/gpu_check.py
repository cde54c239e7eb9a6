"""One prepared GPU check: NSNet inference videos/s with host vs GPU JPEG decode, input rates.

    python launch/gpu_check.py --out=$OUT            # ActivityNet shapes, < 5 min on one H100/H200
    python launch/gpu_check.py --out=/tmp/x --tiny   # tiny shapes: runs on a CPU in ~1 min

Needs only jax, flax, numpy, pillow (torch + torchvision for the GPU decoder) and this repo's
modules that import without TensorFlow/TFDS/ml_collections. The JPEG frames are generated here
(smooth moving scenes with noise, 341x256, quality 90) and written as plain files, then read back.
Shapes: T=16, K=6, MobileNetV2 @128 sampler, ResNet-50 @224 recognizer, random weights, float32
and bfloat16 (`--sampler`, `--recognizer`: other backbones of models/registry.py, e.g. patch_cnn
for the fastest compiling smoke run). Prints one JSON line per result and writes them to
OUT/gpu_check.jsonl:
- env: versions, devices, what is missing (the GPU decoder is skipped, with the reason, if so).
- input_*: decode-only rates per view (host: 1 thread = per core, and all threads; GPU: nvJPEG),
  among them what the decode-aware path decodes (T low-res + K full) with and without a stored
  sampler view (T small JPEGs, `decode.encode_view`, as `sampler_cache --format=jpeg` stores it).
- compute_*: NSNet on pre-decoded device frames (videos/s, TFLOP/s from XLA's GMACs, MFU).
- e2e_*: decode-aware NSNet from JPEG bytes, host decode vs GPU decode.
- e2e_overlapped: the same over a stream of batches, decoding batch i+1 while batch i computes,
  against decode alone and compute alone (`share_of_min_decode_compute`; 1.0: perfect overlap).
  e2e and e2e_overlapped rows come twice per decoder: sampler_view "decoded" (from the full
  frames) and "stored".
- augment_in_step: the sampler cache's crop+flip done on the device, ms per batch.
"""

from __future__ import annotations

import os

# JAX must leave GPU memory for torch's decoder; set before JAX starts.
os.environ.setdefault("XLA_PYTHON_CLIENT_MEM_FRACTION", "0.6")

import argparse  # noqa: E402
import concurrent.futures  # noqa: E402
import importlib  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402
from typing import Any  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

# Dense bf16 tensor peak in TFLOP/s by device kind (vendor datasheets, SXM parts).
PEAK_BF16_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0, "B200": 2250.0}


class Report:
    def __init__(self, out_dir: str):
        os.makedirs(out_dir, exist_ok=True)
        self.path = os.path.join(out_dir, "gpu_check.jsonl")
        self.file = open(self.path, "w")  # noqa: SIM115 - open for the whole run
        self.start = time.perf_counter()

    def emit(self, kind: str, **fields: Any) -> None:
        line = json.dumps(
            {"check": kind, "t_s": round(time.perf_counter() - self.start, 1), **fields}
        )
        print(line, flush=True)
        self.file.write(line + "\n")
        self.file.flush()


def _version(name: str) -> str | None:
    try:
        return getattr(importlib.import_module(name), "__version__", "?")
    except Exception as e:  # noqa: BLE001 - report, do not fail
        return f"missing ({type(e).__name__})"


def _peak(device_kind: str) -> float | None:
    for key, value in PEAK_BF16_TFLOPS.items():
        if key in device_kind:
            return value
    return None


def make_jpeg_files(root: str, batch: int, num_frames: int, short_side: int) -> list[list[bytes]]:
    """Procedural frames written as plain JPEG files, then read back as a reader would."""
    from nsnet_jax.inference.decode_aware import synthetic_encoded_videos

    videos = synthetic_encoded_videos(batch, num_frames, short_side=short_side, seed=0)
    out = []
    for b, frames in enumerate(videos):
        folder = os.path.join(root, f"video_{b:04d}")
        os.makedirs(folder, exist_ok=True)
        paths = []
        for t, data in enumerate(frames):
            path = os.path.join(folder, f"image_{t + 1:05d}.jpg")
            with open(path, "wb") as f:
                f.write(data)
            paths.append(path)
        out.append([open(p, "rb").read() for p in paths])  # noqa: SIM115
    return out


def timed(fn, iters: int, warmup: int = 1) -> float:
    """Median seconds per call of fn() (results waited for) after warm-up calls."""
    for _ in range(warmup):
        jax.block_until_ready(fn())
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def decode_aware_input(decoder, videos, stored, low_size: int, high_size: int, chosen):
    """What decode-aware NSNet decodes for one batch: the sampler view (from the full frames, or
    the `stored` one), then the `chosen` frames at full size. Fresh lists: the GPU decoder reuses
    the sampler view's frames for the K within this call but nothing from an earlier call."""
    vids = list(videos)
    decoder.view(vids if stored is None else list(stored), low_size)
    return decoder.view(vids, high_size, indices=chosen)


def overlapped_row(
    run,
    variables,
    videos,
    chosen,
    iters: int,
    compute_vps: float,
    stored: list[list[bytes]] | None = None,
    **fields: Any,
) -> dict[str, Any]:
    """Decode-aware NSNet over a stream of batches with decode overlapping compute
    (`decode_aware.run_overlapped`) against decode alone and compute alone: the stream reaches
    min(decode-only, compute-only) when the overlap is perfect. `stored`: the batch's stored
    sampler view, read instead of a low-res decode of the full frames."""
    from nsnet_jax.inference import decode_aware as da

    batch = len(videos)

    def one_batch():  # fresh lists: nothing decoded for an earlier call is reused
        vids = list(videos)
        return vids if stored is None else da.StoredViewBatch(vids, list(stored))

    decode_s = timed(
        lambda: decode_aware_input(run.decoder, videos, stored, *run.sizes, chosen), iters
    )
    decode_vps = batch / decode_s
    n = max(iters, 2) + 1
    list(da.run_overlapped(run, variables, [one_batch() for _ in range(2)]))  # warm-up
    start = time.perf_counter()
    outs = list(da.run_overlapped(run, variables, [one_batch() for _ in range(n)]))
    stream_vps = n * batch / (time.perf_counter() - start)
    bound = min(decode_vps, compute_vps)
    return dict(
        what="decode-aware NSNet over a stream of batches, batch i+1 decoding while i computes",
        sampler_view="decoded" if stored is None else "stored",
        videos_per_s=round(stream_vps, 1),
        decode_only_videos_per_s=round(decode_vps, 1),
        compute_only_videos_per_s=round(compute_vps, 1),
        share_of_min_decode_compute=round(stream_vps / bound, 3),
        wait_s_median=round(float(np.median([o["timings"]["wait_s"] for o in outs])), 4),
        batches=n,
        **fields,
    )


def build_nsnet(shapes: dict[str, Any], dtype: Any):
    from nsnet_jax.models.nsnet import NSNet
    from nsnet_jax.models.recognizer import Recognizer
    from nsnet_jax.models.sampler import NSNetSampler

    sampler = NSNetSampler(
        backbone=shapes["sampler"],
        width=shapes["sampler_width"],
        video_classes=shapes["classes"] + 1,
        dtype=dtype,
    )
    recognizer = Recognizer(
        backbone=shapes["recognizer"],
        num_classes=shapes["classes"],
        width=shapes["recognizer_width"],
        dtype=dtype,
    )
    model = NSNet(sampler=sampler, recognizer=recognizer, num_select=shapes["k"])
    lo = jnp.zeros((1, shapes["t"], shapes["s"], shapes["s"], 3), jnp.uint8)
    hi = jnp.zeros((1, shapes["k"], shapes["r"], shapes["r"], 3), jnp.uint8)

    def init_all(module, lo_frames, hi_frames):
        module.sample(lo_frames)
        return module.recognize(hi_frames)

    import flax.linen as nn

    from nsnet_jax.bench.common import random_fill

    # random values on the init's shapes: jitting the init itself compiles for a minute on a CPU
    abstract = jax.eval_shape(nn.init(init_all, model), jax.random.PRNGKey(0), lo, hi)
    return model, jax.device_put(random_fill(abstract), jax.devices()[0])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True, help="folder for gpu_check.jsonl")
    p.add_argument("--tiny", action="store_true", help="tiny shapes, for a CPU smoke run")
    p.add_argument("--batch", type=int, default=0, help="videos per call (default 64; tiny 2)")
    p.add_argument("--iters", type=int, default=0, help="timed calls per row (default 5; tiny 1)")
    p.add_argument("--dtypes", default="bfloat16,float32")
    p.add_argument("--sampler", default="mobilenet_v2", help="the sampler's backbone")
    p.add_argument(
        "--recognizer", default="", help="its backbone (default resnet50; tiny resnet18)"
    )
    p.add_argument("--skip_input", action="store_true", help="only the compute and e2e rows")
    p.add_argument("--budget_s", type=float, default=270.0, help="skip what is left after this")
    args = p.parse_args(argv)
    report = Report(args.out)
    if args.tiny:
        shapes = dict(t=4, k=2, s=32, r=48, classes=10, sampler_width=0.25)
        shapes.update(recognizer="resnet18", recognizer_width=0.25, short_side=64)
    else:
        shapes = dict(t=16, k=6, s=128, r=224, classes=200, sampler_width=1.0)
        shapes.update(recognizer="resnet50", recognizer_width=1.0, short_side=256)
    shapes.update(sampler=args.sampler, recognizer=args.recognizer or shapes["recognizer"])
    batch = args.batch or (2 if args.tiny else 64)
    iters = args.iters or (1 if args.tiny else 5)
    cores = os.cpu_count() or 1

    from nsnet_jax.input_pipeline import gpu_decode

    devices = jax.devices()
    kind = devices[0].device_kind
    gpu_ok, gpu_why = gpu_decode.gpu_decode_status()
    report.emit(
        "env",
        python=platform.python_version(),
        jax=jax.__version__,
        backend=jax.default_backend(),
        devices=[d.device_kind for d in devices],
        host_cores=cores,
        flax=_version("flax"),
        torch=_version("torch"),
        torchvision=_version("torchvision"),
        cupy=_version("cupy"),
        gpu_decode=gpu_ok,
        gpu_decode_why=gpu_why,
        shapes=shapes,
        batch=batch,
        iters=iters,
    )

    def over_budget(what: str) -> bool:
        if time.perf_counter() - report.start > args.budget_s:
            report.emit("skipped", what=what, reason=f"past --budget_s={args.budget_s}")
            return True
        return False

    with tempfile.TemporaryDirectory() as tmp:
        videos = make_jpeg_files(tmp, batch, shapes["t"], shapes["short_side"])
    jpeg_kib = float(np.mean([len(f) for v in videos for f in v])) / 1024
    import io

    from PIL import Image

    frame_size = Image.open(io.BytesIO(videos[0][0])).size
    report.emit(
        "frames", videos=batch, frame_size=list(frame_size), mean_jpeg_kib=round(jpeg_kib, 1)
    )
    t, k, s, r = shapes["t"], shapes["k"], shapes["s"], shapes["r"]
    chosen = np.tile(np.linspace(0, t - 1, k).round().astype(int), (batch, 1))

    # ---- input only: videos/s per view
    pool = concurrent.futures.ThreadPoolExecutor(cores)
    decoders: dict[str, Any] = {
        "host_1_thread": gpu_decode.HostDecoder(None),
        f"host_{cores}_threads": gpu_decode.HostDecoder(pool),
    }
    if gpu_ok:
        decoders["gpu"] = gpu_decode.GpuDecoder()
    from nsnet_jax.input_pipeline.decode import encode_view

    stored = [encode_view(v, s) for v in videos]  # the stored sampler view: T small JPEGs
    report.emit("stored_sampler_view", size=s, mean_jpeg_kib=round(
        float(np.mean([len(f) for v in stored for f in v])) / 1024, 2))  # fmt: skip

    # view -> (what it decodes, frames it outputs); fresh lists each call: no reuse across calls
    views = {
        "sampler_all_t": (lambda dec: dec.view(list(videos), s), t),
        "recognizer_k": (lambda dec: dec.view(list(videos), r, indices=chosen), k),
        "recognizer_all_t": (lambda dec: dec.view(list(videos), r), t),
        "sampler_stored_all_t": (lambda dec: dec.view(list(stored), s), t),
        "decode_aware": (lambda dec: decode_aware_input(dec, videos, None, s, r, chosen), t + k),
        "decode_aware_stored": (
            lambda dec: decode_aware_input(dec, videos, stored, s, r, chosen),
            t + k,
        ),
    }
    for name, dec in decoders.items():
        for view, (fn, frames) in views.items():
            if args.skip_input or over_budget(f"input_{name}_{view}"):
                break
            try:
                sec = timed(lambda dec=dec, fn=fn: fn(dec), iters)
                report.emit(
                    "input",
                    decoder=name,
                    view=view,
                    videos_per_s=round(batch / sec, 1),
                    frames_per_s=round(batch * frames / sec, 1),
                )
            except Exception as e:  # noqa: BLE001
                report.emit("error", what=f"input_{name}_{view}", error=repr(e)[:500])
    if gpu_ok and not args.skip_input and not over_budget("input_gpu_nvjpeg_only"):
        dec = decoders["gpu"]
        flat = [f for v in videos for f in v]
        import torch

        def nvjpeg_only():
            dec._decode_images(flat)
            torch.cuda.synchronize()

        sec = timed(nvjpeg_only, iters)
        report.emit(
            "input",
            decoder="gpu",
            view="nvjpeg_decode_only_all_t",
            videos_per_s=round(batch / sec, 1),
            frames_per_s=round(len(flat) / sec, 1),
        )

    # ---- models: compute alone, then end to end from JPEG bytes
    from nsnet_jax.costs.flops import xla_flops
    from nsnet_jax.inference import decode_aware as da

    gmacs = None
    for dtype_name in [d for d in args.dtypes.split(",") if d]:
        if over_budget(f"models_{dtype_name}"):
            break
        try:
            dtype = {"bfloat16": jnp.bfloat16, "float32": jnp.float32}[dtype_name]
            start = time.perf_counter()
            model, variables = build_nsnet(shapes, dtype)
            sample = da.make_sample_fn(model)
            recognize = da.make_recognize_selected_fn(model)
            key = jax.random.PRNGKey(1)
            lo = jax.random.randint(key, (batch, t, s, s, 3), 0, 256).astype(jnp.uint8)
            hi = jax.random.randint(key, (batch, k, r, r, 3), 0, 256).astype(jnp.uint8)
            if gmacs is None:  # XLA's count on the lowered HLO: no extra compile
                pairs = ((sample, lo), (recognize, hi))
                try:
                    flops = sum(xla_flops(fn, variables, x) for fn, x in pairs)
                    gmacs = flops / 2 / 1e9 / batch
                except RuntimeError as e:  # the timings matter more than the FLOP count
                    report.emit("note", what="gmacs", error=str(e))
                    gmacs = float("nan")
            jax.block_until_ready(sample(variables, lo))
            jax.block_until_ready(recognize(variables, hi))
            compile_s = time.perf_counter() - start

            def compute(sample=sample, recognize=recognize, variables=variables, lo=lo, hi=hi):
                return sample(variables, lo), recognize(variables, hi)

            sec = timed(compute, iters)
            vps = batch / sec
            known = gmacs == gmacs  # NaN: XLA gave no count on this backend
            tflops = 2 * gmacs * 1e9 * vps / 1e12 if known else None
            peak = _peak(kind)
            report.emit(
                "compute",
                dtype=dtype_name,
                what="sampler T + recognizer K on pre-decoded device frames",
                videos_per_s=round(vps, 1),
                gmacs_per_video=round(gmacs, 3) if known else None,
                tflops=round(tflops, 2) if known else None,
                mfu_vs_bf16_peak=round(tflops / peak, 4) if peak and known else None,
                peak_bf16_tflops=peak,
                device=kind,
                compile_s=round(compile_s, 1),
            )
            for name, dec in decoders.items():
                if name == "host_1_thread" or over_budget(f"e2e_{name}_{dtype_name}"):
                    continue
                run = da.make_decode_aware_fn(model, s, r, pool, sample=sample, decoder=dec)
                for low_name, low in (("decoded", None), ("stored", stored)):
                    splits = []

                    def call(run=run, splits=splits, variables=variables, low=low):
                        jpegs = None if low is None else list(low)
                        out = run(variables, list(videos), sampler_jpegs=jpegs)
                        splits.append(out["timings"])
                        return out["logits"]

                    sec = timed(call, iters)
                    median = {
                        f"{part}_median": round(
                            float(np.median([x[part] for x in splits[-iters:]])), 4
                        )
                        for part in ("decode_s", "compute_s")
                    }
                    report.emit(
                        "e2e",
                        dtype=dtype_name,
                        decoder=name,
                        sampler_view=low_name,
                        what="decode-aware NSNet from JPEG bytes (T low-res, top-K, K full-res)",
                        videos_per_s=round(batch / sec, 1),
                        **median,
                        device=kind,
                    )
                    if over_budget(f"e2e_overlapped_{name}_{low_name}_{dtype_name}"):
                        continue
                    row = overlapped_row(run, variables, videos, chosen, iters, vps, low,
                                         dtype=dtype_name, decoder=name, device=kind)  # fmt: skip
                    report.emit("e2e_overlapped", **row)
        except Exception as e:  # noqa: BLE001 - report and go on to the next dtype
            report.emit("error", what=f"models_{dtype_name}", error=repr(e)[:500],
                        trace=traceback.format_exc()[-1500:])  # fmt: skip

    # ---- the sampler cache's augmentation moved into the jitted step: its cost on this device
    if not over_budget("augment_in_step"):
        rng = np.random.default_rng(0)
        n = batch * t
        frames = jnp.asarray(rng.integers(0, 256, (n, s, s, 3), dtype=np.uint8))
        from nsnet_jax.input_pipeline import decode

        boxes_np = [decode.random_resized_box(rng, s, s, (0.25, 1.0)) for _ in range(batch)]
        boxes = jnp.asarray(np.repeat(np.asarray(boxes_np, np.float32), t, axis=0))
        flips = jnp.asarray(np.repeat(rng.random(batch) < 0.5, t))
        sec = timed(lambda: gpu_decode.crop_resize(frames, boxes, flips, s), iters)
        report.emit(
            "augment_in_step",
            videos=batch,
            frames=n,
            size=s,
            ms_per_batch=round(sec * 1e3, 3),
            videos_per_s=round(batch / sec, 1),
            device=kind,
        )
    pool.shutdown()
    report.emit("done", seconds=round(time.perf_counter() - report.start, 1), out=report.path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
