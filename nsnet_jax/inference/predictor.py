"""predict: a trained NSNet on unlabelled videos, one JSON line per video.

Per batch of B videos: open each (decode once, sampler view of the T candidates) in a thread pool
-> jitted sampler + top-K over the device mesh -> full-size views of only the K chosen candidates
-> jitted recognizer on K. The next batch is opened while this one computes. A video that cannot
be read gives a line with an `error` field and the run goes on; the summary counts both.

With `early_exit_threshold`, the K_max best-scored candidates (K_max = the largest eval K, as in
evaluation) are read at full size and go to the recognizer best first: prefix j (NSNet-j's call,
the first j in temporal order) runs only for the videos no earlier prefix was sure about
(`exit_rules.exit_by_prefix`), and each line says which frames were used and their GMACs.
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

from nsnet_jax.contracts import eval_ks
from nsnet_jax.inference import exit_rules
from nsnet_jax.inference.early_exit import bucket_sizes
from nsnet_jax.inference.export import SavedModelUnreadable
from nsnet_jax.inference.jitted import make_recognize_fn
from nsnet_jax.inference.sources import Source, find_sources
from nsnet_jax.inference.trained import TrainedModel
from nsnet_jax.inference.video_reader import OpenVideo, open_source
from nsnet_jax.input_pipeline.video_io import SkipVideo
from nsnet_jax.models.nsnet import NSNet, input_shapes
from nsnet_jax.models.selection import topk_indices, topk_indices_by_score
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
    engine: str = "auto"  # auto | jax | tf | onnx | openvino | onnx_int8 | openvino_bf16
    early_exit_threshold: float | None = None  # None: off; else exit once confidence > this
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


ENGINES = ("auto", "jax", "tf", "onnx", "openvino", "onnx_int8", "openvino_bf16")
# the ONNX export: fixed K, so no early exit
ONNX_ENGINES = ("onnx", "openvino", "onnx_int8", "openvino_bf16")
# `auto` on one CPU process: the first of these whose packages are installed (and whose export
# runs; else the next), fastest first on the CPU's vendor (docs/performance.md#cpu-serving: at
# ActivityNet shapes OpenVINO ran 1.05-1.08x ONNX Runtime on an Intel Xeon, ONNX Runtime
# 1.05-1.07x OpenVINO on an AMD EPYC). Only engines that choose JAX's frames and top-1: never
# onnx_int8 or openvino_bf16 (reduced precision).
AUTO_CPU_ORDER = ("onnx", "openvino", "tf")
AUTO_CPU_ORDER_INTEL = ("openvino", "onnx", "tf")
_ENGINE_NAMES = {
    "jax": "JAX", "tf": "the SavedModel", "onnx": "ONNX Runtime", "openvino": "OpenVINO",
    "onnx_int8": "ONNX Runtime (int8 recognizer)", "openvino_bf16": "OpenVINO (bf16 recognizer)",
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


def check_early_exit_engine(engine: str) -> None:
    """Early exit needs a recognizer that takes any number of frames; the ONNX export's takes K."""
    if engine in ONNX_ENGINES:
        raise ValueError(
            f"--engine={engine} has no early exit (its recognizer takes K frames): use "
            "--engine=tf, --engine=jax or --engine=auto with --early_exit_threshold"
        )


def cpu_vendor(cpuinfo: str = "/proc/cpuinfo") -> str:
    """The CPU's vendor id ("GenuineIntel", "AuthenticAMD", ...), "" where Linux does not say."""
    try:
        with open(cpuinfo) as f:
            for line in f:
                if line.startswith("vendor_id"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


def auto_cpu_order() -> tuple[str, ...]:
    """The CPU engines `auto` considers, fastest first on this CPU's vendor."""
    return AUTO_CPU_ORDER_INTEL if cpu_vendor() == "GenuineIntel" else AUTO_CPU_ORDER


def auto_engines() -> list[str]:
    """The engines `auto` tries in order: JAX alone off CPU or over several processes."""
    if jax.default_backend() != "cpu" or jax.process_count() > 1:
        return ["jax"]
    return [e for e in auto_cpu_order() if engine_available(e)] + ["jax"]


def choose_engine(engine: str) -> str:
    """`auto`: on a single CPU process the fastest installed float32 engine, JAX elsewhere.

    At ActivityNet shapes on three two-core CPUs the ONNX export runs NSNet at 1.07-1.27x
    `torch.compile` and 1.8-2.1x JAX 0.10's jitted float32 path (OpenVINO first on Intel CPUs,
    ONNX Runtime first elsewhere), then the SavedModel (jax2tf) at 0.9-1.04x `torch.compile`
    (docs/performance.md#cpu-serving).
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


def make_tf_predict_fns(
    trained: TrainedModel, directory: str
) -> tuple[Callable, Callable, Callable]:
    """(sample: sampler frames -> scores, indices), (recognize: K frames -> probs) and
    (recognize_frames: any k frames -> logits, for early exit) served by the SavedModel
    `export.export_saved_model` writes (same frames chosen, logits within 1e-4)."""
    import tensorflow as tf

    from nsnet_jax.inference.export import export_saved_model, input_specs, load_saved_model

    path = export_saved_model(trained, directory)
    loaded = load_saved_model(path, input_specs(trained.config)["sampler_frames"])
    sample_sig, recognize_sig = loaded.signatures["sample"], loaded.signatures["recognize"]
    frames_sig = loaded.signatures["recognize_frames"]

    def sample(low: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        out = sample_sig(sampler_frames=tf.constant(low))
        return out["scores"].numpy(), out["indices"].numpy()

    def recognize(high: np.ndarray) -> np.ndarray:
        logits = recognize_sig(selected_frames=tf.constant(high))["logits"].numpy()
        return np.asarray(jax.nn.softmax(logits.astype(np.float32), axis=-1))

    def recognize_frames(frames: np.ndarray) -> np.ndarray:
        return frames_sig(selected_frames=tf.constant(frames))["logits"].numpy()

    # the signatures need the loaded module
    sample.keep_alive = recognize.keep_alive = recognize_frames.keep_alive = loaded
    return sample, recognize, recognize_frames


@dataclasses.dataclass
class EarlyExit:
    """predict's early exit: the rule and K_max evaluation uses, GMACs by frames used."""

    threshold: float
    k_max: int
    rule: str
    gmacs: np.ndarray  # [K_max]: a video that used j frames costs gmacs[j - 1]

    @classmethod
    def for_config(cls, config: Any, threshold: float) -> EarlyExit:
        from nsnet_jax.costs.flops import count_gmacs

        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"early exit threshold {threshold} must be in [0, 1]")
        ks = eval_ks(config)
        counts = {k: count_gmacs(_with_k(config, k)) for k in ks}  # as evaluation counts them
        k_max = max(ks)
        table = exit_rules.gmacs_table_from_counts(counts, k_max)
        rule = exit_rules.config_rule(config)
        return cls(float(threshold), k_max, rule, table)

    def run(
        self,
        recognize: Callable[[np.ndarray, np.ndarray], np.ndarray],
        high: np.ndarray,
        order: np.ndarray,
        sizes: Sequence[int],
    ) -> dict[str, np.ndarray]:
        """high [n, K_max, H, W, 3] in score order (`order` [n, K_max]) -> exit_by_prefix's dict.

        `recognize(frames [b, K_max, H, W, 3], positions [b, j]) -> logits [b, C]` runs the
        recognizer on those positions of each row (the prefix in temporal order); the active videos
        are padded with a repeat to the smallest of `sizes` that holds them (one compile each).
        """

        def prefix(rows: np.ndarray, j: int) -> np.ndarray:
            size = min((s for s in sizes if s >= len(rows)), default=len(rows))
            padded = np.concatenate([rows, np.full(size - len(rows), rows[0])])
            pos = np.argsort(order[padded, :j], axis=1, kind="stable").astype(np.int32)
            return np.asarray(recognize(high[padded], pos))[: len(rows)]

        return exit_rules.exit_by_prefix(prefix, len(high), self.k_max, self.threshold, self.rule)


def _with_k(config: Any, k: int) -> Any:
    c = config.copy_and_resolve_references()
    with c.unlocked():
        c.model.num_select = k
    return c


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
    setup_start = time.perf_counter()
    config, names = trained.config, trained.class_names
    mesh = mesh or data_mesh()
    n_dev = mesh.devices.size
    batch = -(-max(1, opts.batch_size) // n_dev) * n_dev
    sharding = batch_sharding(mesh)
    if opts.engine not in ENGINES:
        raise ValueError(f"engine={opts.engine!r}: choose one of {list(ENGINES)}")
    ee = None
    if opts.early_exit_threshold is not None:
        ee = EarlyExit.for_config(config, opts.early_exit_threshold)
        sizes = sorted({-(-s // n_dev) * n_dev for s in bucket_sizes(batch)}, reverse=True)
        check_early_exit_engine(opts.engine)
    candidates = auto_engines() if opts.engine == "auto" else [opts.engine]
    if ee is not None:  # early exit needs a recognizer that takes any number of frames
        candidates = [e for e in candidates if e not in ONNX_ENGINES]
    tmp = tempfile.mkdtemp(prefix="nsnet_predict_") if candidates != ["jax"] else None
    for i, engine in enumerate(candidates):
        if engine == "jax":
            break
        try:
            if engine == "tf":
                fns = make_tf_predict_fns(trained, os.path.join(tmp, "sm"))
                sample_host, recognize_host, frames_host = fns

                def prefix_host(high, pos, frames_host=frames_host):  # the signature takes any k
                    pos = pos[:, :, None, None, None]
                    return frames_host(np.take_along_axis(high, pos, axis=1))

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

        prefix_jit = make_recognize_fn(trained.model, mesh)  # evaluation's prefix call

        def prefix_host(high, pos):
            high, pos = jax.device_put(high, sharding), jax.device_put(pos, sharding)
            return jax.device_get(prefix_jit(variables, high, pos))

    gmacs = float(count_gmacs(config)["video_gmacs"])
    sources = find_sources(inputs)
    total = len(sources)
    log.info("predict: %d inputs, batch %d over %d devices", total, batch, n_dev)
    if total:  # compile (JAX, TF's XLA) and warm up before the clock, so videos/s is serving's
        # (not onnx_int8's recognizer: it calibrates its int8 ranges on the first real batch)
        warm = ee is None and engine != "onnx_int8"
        _warm_up(config, batch, sample_host, recognize_host if warm else None)
    setup_s = time.perf_counter() - setup_start
    log.info("predict: %s ready in %.1f s (export or compile, warm-up)", engine, setup_s)

    counts = {"videos": total, "ok": 0, "errors": 0}
    spent: list[tuple[int, float]] = []  # early exit: (frames used, GMACs) per video
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
                if ee is None:
                    highs = list(pool.map(OpenVideo.full, videos, list(idx[: len(good)])))
                    probs = recognize_host(_pad(np.stack(highs), batch))
                    for p, j in enumerate(good):
                        results[j] = _line(chunk[j].path, opened[j], probs[p], idx[p], scores[p],
                                           names, opts.top, gmacs)  # fmt: skip
                else:
                    order = np.asarray(topk_indices_by_score(jax.numpy.asarray(scores), ee.k_max))
                    order = order[: len(good)]  # best first, as evaluation ranks them
                    highs = np.stack(list(pool.map(OpenVideo.full, videos, list(order))))
                    out = ee.run(prefix_host, highs, order, sizes)
                    probs = np.asarray(jax.nn.softmax(out["logits"].astype(np.float32), axis=-1))
                    for p, j in enumerate(good):
                        used = int(out["frames_used"][p])
                        cost = float(ee.gmacs[used - 1])
                        results[j] = _line(chunk[j].path, opened[j], probs[p],
                                           np.sort(order[p, :used]), scores[p], names, opts.top,
                                           cost)  # fmt: skip
                        conf = exit_rules.confidences(out["prefix"][p : p + 1, :used], ee.rule)
                        results[j]["early_exit"] = {
                            "threshold": ee.threshold, "rule": ee.rule, "k_max": ee.k_max,
                            "frames_used": used, "order": [int(t) for t in order[p, :used]],
                            "confidence": [round(float(c), 6) for c in conf[0]], "gmacs": cost,
                        }  # fmt: skip
                        spent.append((used, cost))
                for j in good if opts.contact_sheet_dir else ():
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
        setup_s=round(setup_s, 3),
        gmacs_per_video=gmacs,
        batch_size=batch,
        devices=n_dev,
        backend=jax.default_backend(),
        engine=engine,
    )
    if ee is not None:
        used, cost = (np.array([x[i] for x in spent]) for i in (0, 1))
        counts["gmacs_per_video"] = round(float(cost.mean()), 6) if len(spent) else None
        counts["early_exit"] = {
            "threshold": ee.threshold, "rule": ee.rule, "k_max": ee.k_max,
            "mean_frames_used": round(float(used.mean()), 6) if len(spent) else None,
            "gmacs_by_frames": [float(g) for g in ee.gmacs],
        }  # fmt: skip
    return counts


def _warm_up(config: Any, batch: int, sample: Callable, recognize: Callable | None) -> None:
    """One call of each engine function on zero frames of the serving shapes."""
    low, high = input_shapes(config, batch)
    sample(np.zeros(low, np.uint8))
    if recognize is not None:  # (early exit's prefix calls take several shapes: not warmed up)
        recognize(np.zeros((batch, config.model.num_select) + high[2:], np.uint8))


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
