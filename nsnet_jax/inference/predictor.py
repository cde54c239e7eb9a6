"""predict: a trained NSNet on unlabelled videos, one JSON line per video.

Per batch of B videos: open each (decode once, sampler view of the T candidates) in a thread pool
-> jitted sampler + top-K over the device mesh -> full-size views of only the K chosen candidates
-> jitted recognizer on K. The next batch is opened while this one computes. A video that cannot
be read gives a line with an `error` field and the run goes on; the summary counts both.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import jax
import numpy as np

from nsnet_jax.inference.export import SavedModelUnreadable
from nsnet_jax.inference.sources import Source, find_sources
from nsnet_jax.inference.trained import TrainedModel
from nsnet_jax.inference.video_reader import OpenVideo, open_source
from nsnet_jax.input_pipeline.video_io import SkipVideo
from nsnet_jax.models.nsnet import NSNet
from nsnet_jax.models.selection import topk_indices
from nsnet_jax.sharding import batch_sharding, data_mesh, replicate

log = logging.getLogger("nsnet_jax")


@dataclasses.dataclass
class PredictOptions:
    """How predict reads and batches; defaults suit a CPU host."""

    batch_size: int = 8  # rounded up to a multiple of the device count
    num_threads: int = 4  # video decoding threads
    folder_fps: float = 0.0  # frame folders' extraction rate, for timestamps (0: null)
    sample_fps: float = 0.0  # sample video files at this rate instead of T segment centres
    top: int = 5
    contact_sheet_dir: str | None = None
    pipeline_views: bool = False  # frame folders: both views from one full decode, as in eval
    engine: str = "auto"  # auto | jax | tf | onnx | openvino (auto: see choose_engine)
    log_every_s: float = 10.0


def make_predict_fns(model: NSNet, mesh) -> tuple[Callable, Callable]:
    """Jitted (sample: sampler frames -> scores, indices) and (recognize: K frames -> probs)."""
    sharding = batch_sharding(mesh)

    @jax.jit
    def sample(variables, sampler_frames):
        scores = model.apply(variables, sampler_frames, method=NSNet.sample)["scores"]
        idx = topk_indices(scores, model.num_select)
        return jax.lax.with_sharding_constraint((scores, idx), sharding)

    @jax.jit
    def recognize(variables, frames):
        logits = model.apply(variables, frames, method=NSNet.recognize)["logits"]
        return jax.lax.with_sharding_constraint(jax.nn.softmax(logits.astype(np.float32)), sharding)

    return sample, recognize


ENGINES = ("auto", "jax", "tf", "onnx", "openvino")
# `auto` on one CPU process: the first of these whose packages are installed (and whose export
# runs; else the next). Fastest first, by docs/performance.md#cpu-serving.
AUTO_CPU_ORDER = ("onnx", "openvino", "tf")
_ENGINE_NAMES = {
    "jax": "JAX", "tf": "the SavedModel", "onnx": "ONNX Runtime", "openvino": "OpenVINO"
}  # fmt: skip


def engine_available(engine: str) -> bool:
    """Whether this Python has the packages `engine` needs (JAX is always there)."""
    if engine == "jax":
        return True
    if engine == "tf":
        import importlib.util

        return importlib.util.find_spec("tensorflow") is not None
    from nsnet_jax.inference.onnx_export import missing_packages

    return not missing_packages(engine)


def auto_engines() -> list[str]:
    """The engines `auto` tries in order: JAX alone off CPU or over several processes."""
    if jax.default_backend() != "cpu" or jax.process_count() > 1:
        return ["jax"]
    return [e for e in AUTO_CPU_ORDER if engine_available(e)] + ["jax"]


def choose_engine(engine: str) -> str:
    """`auto`: the first installed of onnx, openvino, tf on a single CPU process, JAX elsewhere.

    On this project's 2-core CPU at ActivityNet shapes the SavedModel (jax2tf, run by TF's XLA
    with oneDNN) ran NSNet at 1.58x JAX's jitted float32 path and at 0.97x `torch.compile`, while
    no XLA:CPU flag moved JAX by more than the noise (docs/performance.md). The ONNX export,
    timed round-robin with them later on the same CPU: ONNX Runtime 2.08x JAX (1.44x the
    SavedModel, 1.22x `torch.compile`), OpenVINO 2.01x JAX.
    """
    if engine not in ENGINES:
        raise ValueError(f"engine={engine!r}: choose one of {list(ENGINES)}")
    if engine != "auto":
        return engine
    return auto_engines()[0]


def make_onnx_predict_fns(
    trained: TrainedModel, directory: str, runtime: str
) -> tuple[Callable, Callable]:
    """(sample: sampler frames -> scores, indices) and (recognize: K frames -> probs) from the
    ONNX files `onnx_export.export_onnx` writes, run by ONNX Runtime or OpenVINO."""
    from nsnet_jax.inference.onnx_export import make_onnx_fns

    sample, logits_fn = make_onnx_fns(trained, directory, runtime)

    def recognize(high: np.ndarray) -> np.ndarray:
        logits = logits_fn(high)
        return np.asarray(jax.nn.softmax(logits.astype(np.float32), axis=-1))

    return sample, recognize


def make_tf_predict_fns(trained: TrainedModel, directory: str) -> tuple[Callable, Callable]:
    """(sample: sampler frames -> scores, indices) and (recognize: K frames -> probs) served by the
    SavedModel `export.export_saved_model` writes (same frames chosen, logits within 1e-4)."""
    import tensorflow as tf

    from nsnet_jax.inference.export import export_saved_model, input_specs, load_saved_model

    path = export_saved_model(trained, directory)
    loaded = load_saved_model(path, input_specs(trained.config)["sampler_frames"])
    sample_sig, recognize_sig = loaded.signatures["sample"], loaded.signatures["recognize"]

    def sample(low: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        out = sample_sig(sampler_frames=tf.constant(low))
        return out["scores"].numpy(), out["indices"].numpy()

    def recognize(high: np.ndarray) -> np.ndarray:
        logits = recognize_sig(selected_frames=tf.constant(high))["logits"].numpy()
        return np.asarray(jax.nn.softmax(logits.astype(np.float32), axis=-1))

    sample.keep_alive = recognize.keep_alive = loaded  # the signatures need the loaded module
    return sample, recognize


def _pad(x: np.ndarray, n: int) -> np.ndarray:
    if len(x) == n:
        return x
    return np.concatenate([x, np.zeros((n - len(x),) + x.shape[1:], x.dtype)])


def _open(src: Source, config: Any, opts: PredictOptions) -> OpenVideo | str:
    if src.error:
        return src.error
    d = config.data
    try:
        return open_source(
            src.path, src.kind, d.num_frames, d.sampler_size, d.recognizer_size,
            folder_fps=opts.folder_fps, sample_fps=opts.sample_fps,
            pipeline_views=opts.pipeline_views,
        )  # fmt: skip
    except SkipVideo as e:
        return str(e)


def _chunks(items: Sequence[Source], n: int) -> Iterator[Sequence[Source]]:
    for i in range(0, len(items), n):
        yield items[i : i + n]


def predict(
    trained: TrainedModel,
    inputs: Sequence[str],
    write: Callable[[dict[str, Any]], None],
    options: PredictOptions | None = None,
    mesh=None,
) -> dict[str, Any]:
    """Writes one dict per video through `write`; returns the summary (counts, time, videos/s)."""
    from nsnet_jax.costs.flops import count_gmacs

    opts = options or PredictOptions()
    config, names = trained.config, trained.class_names
    mesh = mesh or data_mesh()
    n_dev = mesh.devices.size
    batch = -(-max(1, opts.batch_size) // n_dev) * n_dev
    sharding = batch_sharding(mesh)
    if opts.engine not in ENGINES:
        raise ValueError(f"engine={opts.engine!r}: choose one of {list(ENGINES)}")
    candidates = auto_engines() if opts.engine == "auto" else [opts.engine]
    tmp = tempfile.mkdtemp(prefix="nsnet_predict_") if candidates != ["jax"] else None
    for i, engine in enumerate(candidates):
        if engine == "jax":
            break
        try:
            if engine == "tf":
                sample_host, recognize_host = make_tf_predict_fns(trained, os.path.join(tmp, "sm"))
            else:
                sample_host, recognize_host = make_onnx_predict_fns(
                    trained, os.path.join(tmp, engine), engine
                )
            break
        except Exception as e:
            # auto only: a SavedModel this TensorFlow cannot run, or an ONNX export or runtime
            # failure, hands over to the next engine with one line
            unreadable = isinstance(e, SavedModelUnreadable)
            if opts.engine != "auto" or (engine == "tf" and not unreadable):
                raise
            reason = str(e) if engine == "tf" else f"{type(e).__name__}: {str(e)[:300]}"
            nxt, this = _ENGINE_NAMES[candidates[i + 1]], _ENGINE_NAMES[engine]
            log.warning("predict: serving with %s instead of %s: %s", nxt, this, reason)
    if engine == "jax":
        variables = replicate(trained.variables, mesh)
        sample_jit, recognize_jit = make_predict_fns(trained.model, mesh)

        def sample_host(low):
            return jax.device_get(sample_jit(variables, jax.device_put(low, sharding)))

        def recognize_host(high):
            return jax.device_get(recognize_jit(variables, jax.device_put(high, sharding)))

    gmacs = float(count_gmacs(config)["video_gmacs"])
    sources = find_sources(inputs)
    total = len(sources)
    log.info("predict: %d inputs, batch %d over %d devices", total, batch, n_dev)

    counts = {"videos": total, "ok": 0, "errors": 0}
    start = last_log = time.perf_counter()
    done = 0
    with concurrent.futures.ThreadPoolExecutor(max(1, opts.num_threads)) as pool:
        chunks = list(_chunks(sources, batch))

        def submit(chunk):
            return [pool.submit(_open, s, config, opts) for s in chunk]

        pending = submit(chunks[0]) if chunks else []
        for i, chunk in enumerate(chunks):
            opened = [f.result() for f in pending]
            pending = submit(chunks[i + 1]) if i + 1 < len(chunks) else []  # decode ahead
            good = [j for j, o in enumerate(opened) if isinstance(o, OpenVideo)]
            results: dict[int, dict[str, Any]] = {}
            if good:
                low = _pad(np.stack([opened[j].low for j in good]), batch)
                scores, idx = sample_host(low)
                videos = [opened[j] for j in good]
                highs = list(pool.map(OpenVideo.full, videos, list(idx[: len(good)])))
                probs = recognize_host(_pad(np.stack(highs), batch))
                for p, j in enumerate(good):
                    results[j] = _line(chunk[j].path, opened[j], probs[p], idx[p], scores[p],
                                       names, opts.top, gmacs)  # fmt: skip
                    if opts.contact_sheet_dir:
                        from nsnet_jax.inference.contact_sheet import write_contact_sheet

                        results[j]["contact_sheet"] = write_contact_sheet(
                            opts.contact_sheet_dir, results[j], opened[j].low
                        )
            for j, src in enumerate(chunk):
                if j in results:
                    counts["ok"] += 1
                    write(results[j])
                else:
                    counts["errors"] += 1
                    log.warning("predict: %s: %s", src.path, opened[j])
                    write({"path": src.path, "error": str(opened[j])})
            done += len(chunk)
            now = time.perf_counter()
            if now - last_log >= opts.log_every_s or done == total:
                rate = done / (now - start)
                eta = (total - done) / rate if rate > 0 else 0.0
                log.info("predict: %d/%d videos, %.2f videos/s, ETA %.0f s", done, total, rate, eta)
                last_log = now
    seconds = time.perf_counter() - start
    if tmp is not None:
        shutil.rmtree(tmp, ignore_errors=True)
    counts.update(
        seconds=round(seconds, 3),
        videos_per_s=round(counts["ok"] / seconds, 3) if seconds > 0 else None,
        gmacs_per_video=gmacs,
        batch_size=batch,
        devices=n_dev,
        backend=jax.default_backend(),
        engine=engine,
    )
    return counts


def _line(path, video: OpenVideo, probs, idx, scores, names, top: int, gmacs: float) -> dict:
    order = np.argsort(-probs, kind="stable")[: min(top, len(probs))]
    chosen = [int(t) for t in idx]
    return {
        "path": path,
        "top": [
            {"class": names[int(c)], "index": int(c), "prob": round(float(probs[c]), 6)}
            for c in order
        ],  # fmt: skip
        "selected": chosen,
        "selected_frames": [int(video.frame_numbers[t]) for t in chosen],
        "selected_seconds": [
            None if video.timestamps[t] is None else round(video.timestamps[t], 3) for t in chosen
        ],
        "candidate_frames": [int(f) for f in video.frame_numbers],
        "scores": [round(float(s), 6) for s in scores],
        "gmacs": gmacs,
    }
