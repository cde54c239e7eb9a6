"""A trained NSNet as a TensorFlow SavedModel (jax2tf, native serialization) and a jax.export file.

Serving signatures (batch size free, frames uint8 0..255, centre-cropped squares as in evaluation):

    serving_default  sampler_frames [B,T,h,w,3], frames [B,T,H,W,3]
                     -> logits [B,C] float32, indices [B,K] int32, scores [B,T] float32
    sample           sampler_frames [B,T,h,w,3] -> indices [B,K], scores [B,T]
    recognize        selected_frames [B,K,H,W,3] -> logits [B,C]
    recognize_frames selected_frames [B,k,H,W,3], any k >= 1 -> logits [B,C]

`recognize_frames` is the recognizer on any number of frames (k symbolic, like the batch): a
runtime without JAX does early exit with it, adding NSNet's frames best-scored first and calling it
on the prefix in temporal order (`predict --early_exit_threshold`, docs/early_exit.md).

Two uint8 inputs instead of one full-res input resized inside: the sampler view comes from a cheap
low-resolution decode (PIL draft / a video decoder's scaler), which a resize inside the graph would
waste, and it keeps the SavedModel's numbers equal to the training pipeline's two views. `sample`
then `recognize` is the decode-aware path: decode only the K selected frames at full resolution.

With native serialization the graph holds StableHLO for the platforms given (default: the one
exporting), run by TF's XLA; the parameters are TF variables, so the SavedModel loads in
TensorFlow / TF Serving without JAX or this project.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Iterator, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from nsnet_jax.contracts import eval_ks
from nsnet_jax.inference import exit_rules
from nsnet_jax.inference.trained import TrainedModel
from nsnet_jax.models.nsnet import NSNet
from nsnet_jax.models.selection import gather_frames

log = logging.getLogger("nsnet_jax")


class SavedModelUnreadable(RuntimeError):
    """The exported SavedModel does not run in the installed TensorFlow."""


def _version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


def tf_stablehlo_version() -> str | None:
    """The newest StableHLO version the installed TensorFlow's XLA deserializes, or None."""
    try:
        from tensorflow.compiler.mlir.stablehlo import stablehlo
    except ImportError:
        return None
    return str(stablehlo.get_current_version())


def jax_stablehlo_version() -> str:
    """The StableHLO version `jax.export` writes by default (its 4-week compatibility window)."""
    from jax._src.lib.mlir.dialects import hlo

    req = hlo.StablehloCompatibilityRequirement.WEEK_4
    return str(hlo.get_version_from_compatibility_requirement(req))


class _CappedHlo:
    """The `hlo` dialect module as `jax.export` sees it, with its target version capped."""

    def __init__(self, hlo: Any, version: str):
        self._hlo, self._version = hlo, version

    def __getattr__(self, name: str) -> Any:
        return getattr(self._hlo, name)

    def get_version_from_compatibility_requirement(self, requirement: Any) -> str:
        own = str(self._hlo.get_version_from_compatibility_requirement(requirement))
        return min(own, self._version, key=_version_tuple)


@contextlib.contextmanager
def stablehlo_target(version: str | None) -> Iterator[str]:
    """Serializes `jax.export` artifacts for StableHLO `version` (or older) inside the block.

    JAX writes the version of its 4-week compatibility window (JAX 0.12: 1.18.0), which a
    consumer built with an older StableHLO cannot read (TensorFlow 2.21 reads up to 1.13.7:
    "unregistered operation 'vhlo.custom_call_v2'"). StableHLO downgrades the portable artifact
    to any version within its window when the module uses no newer feature. `jax.export` has no
    argument for this, so the block swaps the dialect module its serializer reads; yields the
    version actually written. None: JAX's default.
    """
    from jax._src.export import _export

    default = jax_stablehlo_version()
    if version is None or _version_tuple(version) >= _version_tuple(default):
        yield default
        return
    if not hasattr(getattr(_export, "hlo", None), "get_version_from_compatibility_requirement"):
        log.warning("export: this JAX serializes StableHLO %s; cannot target %s", default, version)
        yield default
        return
    original = _export.hlo
    _export.hlo = _CappedHlo(original, version)
    try:
        yield version
    finally:
        _export.hlo = original


def portable_topk_indices(scores: jax.Array, k: int) -> jax.Array:
    """`selection.topk_indices` through a stable sort: the same indices, ties to the lower index.

    JAX >= 0.10 lowers `lax.top_k` to a StableHLO composite (`vhlo.composite_v2`) that the XLA in
    TensorFlow 2.21 cannot deserialize; a sort is plain StableHLO that every consumer reads.
    """
    order = jnp.argsort(-scores, axis=-1, stable=True)
    return jnp.sort(order[:, :k], axis=-1)


def _sample_fn(model: NSNet):
    def sample(variables, sampler_frames):
        scores = model.apply(variables, sampler_frames, method=NSNet.sample)["scores"]
        idx = portable_topk_indices(scores, model.num_select)
        return idx.astype(jnp.int32), scores.astype(jnp.float32)

    return sample


def _nsnet_fn(model: NSNet):
    """NSNet.__call__ with the portable top-k: sampler -> top-K -> recognizer on K frames."""
    sample, recognize = _sample_fn(model), _recognize_fn(model)

    def nsnet(variables, sampler_frames, frames):
        idx, scores = sample(variables, sampler_frames)
        return recognize(variables, gather_frames(frames, idx)), idx, scores

    return nsnet


def _recognize_fn(model: NSNet):
    def recognize(variables, selected_frames):
        logits = model.apply(variables, selected_frames, method=NSNet.recognize)["logits"]
        return logits.astype(jnp.float32)

    return recognize


def input_specs(config: Any) -> dict[str, tuple[int, ...]]:
    """Per-video shapes (no batch) of the three inputs."""
    d, t, k = config.data, config.data.num_frames, config.model.num_select
    return {
        "sampler_frames": (t, d.sampler_size, d.sampler_size, 3),
        "frames": (t, d.recognizer_size, d.recognizer_size, 3),
        "selected_frames": (k, d.recognizer_size, d.recognizer_size, 3),
    }


def export_saved_model(
    trained: TrainedModel,
    out_dir: str,
    platforms: Sequence[str] | None = None,
    stablehlo_version: str | None = "tf",
) -> str:
    """Writes the SavedModel to `out_dir`; returns its path.

    `stablehlo_version`: "tf" (default) serializes for the StableHLO that the installed
    TensorFlow reads, so the SavedModel runs where it is written; a version string targets another
    consumer; None keeps JAX's own. `out_dir/assets.extra/nsnet_export.json` records the version.
    """
    import tensorflow as tf
    from jax.experimental import jax2tf

    model, variables = trained.model, jax.device_get(trained.variables)
    specs = input_specs(trained.config)
    tf_vars = jax.tree.map(lambda x: tf.Variable(np.asarray(x), trainable=False), variables)

    def convert(fn, n_inputs, shape="(b, ...)"):
        return jax2tf.convert(
            fn,
            polymorphic_shapes=[None] + [shape] * n_inputs,
            with_gradient=False,
            native_serialization_platforms=tuple(platforms) if platforms else None,
        )

    nsnet_tf = convert(_nsnet_fn(model), 2)
    sample_tf = convert(_sample_fn(model), 1)
    recognize_tf = convert(_recognize_fn(model), 1)
    recognize_frames_tf = convert(_recognize_fn(model), 1, "(b, k, ...)")
    if stablehlo_version == "tf":
        stablehlo_version = tf_stablehlo_version()

    def sig(name):
        return tf.TensorSpec((None,) + specs[name], tf.uint8, name=name)

    module = tf.Module()
    module.variables_tree = tf.nest.flatten(tf_vars)  # tracked, so they are saved

    @tf.function(input_signature=[sig("sampler_frames"), sig("frames")], autograph=False)
    def serving(sampler_frames, frames):
        logits, indices, scores = nsnet_tf(tf_vars, sampler_frames, frames)
        return {"logits": logits, "indices": indices, "scores": scores}

    @tf.function(input_signature=[sig("sampler_frames")], autograph=False)
    def sample(sampler_frames):
        indices, scores = sample_tf(tf_vars, sampler_frames)
        return {"indices": indices, "scores": scores}

    @tf.function(input_signature=[sig("selected_frames")], autograph=False)
    def recognize(selected_frames):
        return {"logits": recognize_tf(tf_vars, selected_frames)}

    any_k = tf.TensorSpec((None, None) + specs["selected_frames"][1:], tf.uint8, "selected_frames")

    @tf.function(input_signature=[any_k], autograph=False)
    def recognize_frames(selected_frames):
        return {"logits": recognize_frames_tf(tf_vars, selected_frames)}

    module.serving, module.sample, module.recognize = serving, sample, recognize
    module.recognize_frames = recognize_frames
    signatures = {"serving_default": serving, "sample": sample, "recognize": recognize,
                  "recognize_frames": recognize_frames}  # fmt: skip
    with stablehlo_target(stablehlo_version) as written:  # jax2tf serializes while tracing
        tf.saved_model.save(module, out_dir, signatures=signatures)
    os.makedirs(os.path.join(out_dir, "assets.extra"), exist_ok=True)
    with open(os.path.join(out_dir, EXPORT_INFO), "w") as f:
        json.dump({"stablehlo_version": written, "jax_version": jax.__version__}, f)
    return out_dir


EXPORT_INFO = os.path.join("assets.extra", "nsnet_export.json")


def saved_model_stablehlo_version(path: str) -> str | None:
    """The StableHLO version a SavedModel of this project was serialized for (None: unrecorded)."""
    try:
        with open(os.path.join(path, EXPORT_INFO)) as f:
            return json.load(f).get("stablehlo_version")
    except FileNotFoundError:
        return None


def load_saved_model(path: str, sampler_shape: Sequence[int]) -> Any:
    """Loads the SavedModel and runs `sample` once on zeros; raises SavedModelUnreadable (one line)
    when the installed TensorFlow cannot run it, e.g. StableHLO newer than its XLA reads.

    A version comparison alone cannot tell: a consumer reads newer artifacts that use no newer
    feature (TF 2.21, reading up to 1.13.7, runs JAX 0.10's 1.15.0), so the check is a real call.
    """
    import tensorflow as tf

    try:
        loaded = tf.saved_model.load(path)
        loaded.signatures["sample"](sampler_frames=tf.zeros((1, *sampler_shape), tf.uint8))
    except (tf.errors.OpError, ValueError, OSError) as e:
        lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()] or [type(e).__name__]
        reason = next((ln for ln in lines if "StableHLO" in ln or "deserialize" in ln), lines[0])
        written, readable = saved_model_stablehlo_version(path), tf_stablehlo_version()
        versions = f" (written as StableHLO {written or 'unrecorded'}, TF reads <= {readable})"
        raise SavedModelUnreadable(
            f"{path} does not run in TensorFlow {tf.__version__}{versions}: {reason[:300]}; "
            "re-export with `python -m nsnet_jax.export` where it is served"
        ) from e
    return loaded


def export_jax(trained: TrainedModel, path: str, platforms: Sequence[str] | None = None) -> str:
    """A serialized `jax.export` module of the whole NSNet, parameters baked in, batch symbolic.

    Load with `jax.export.deserialize(open(path, 'rb').read()).call(sampler_frames, frames)`.
    """
    variables = jax.device_get(trained.variables)
    fn = _nsnet_fn(trained.model)
    specs = input_specs(trained.config)
    (b,) = jax.export.symbolic_shape("b")
    args = [
        jax.ShapeDtypeStruct((b,) + specs[name], jnp.uint8) for name in ("sampler_frames", "frames")
    ]
    exported = jax.export.export(
        jax.jit(lambda s, f: fn(variables, s, f)),
        platforms=tuple(platforms) if platforms else None,
    )(*args)
    with open(path, "wb") as f:
        f.write(exported.serialize())
    return path


SIGNATURES = {
    "serving_default": "sampler_frames [B,T,h,w,3], frames [B,T,H,W,3] -> logits [B,C], "
    "indices [B,K], scores [B,T]",
    "sample": "sampler_frames [B,T,h,w,3] -> indices [B,K], scores [B,T]",
    "recognize": "selected_frames [B,K,H,W,3] -> logits [B,C]",
    "recognize_frames": "selected_frames [B,k,H,W,3], any k >= 1 -> logits [B,C] (early exit)",
}


def early_exit_info(config: Any) -> dict[str, Any]:
    """What a runtime needs to do early exit with `recognize_frames` as predict does."""
    return {
        "k_max": int(max(eval_ks(config))),
        "rule": exit_rules.config_rule(config),
        "order": "frames by descending score (ties: lower index first); prefix j = the first j, "
        "in temporal order; exit at the first prefix whose confidence > threshold, else k_max",
    }


def export_all(
    trained: TrainedModel,
    out_dir: str,
    *,
    platforms: Sequence[str] | None = None,
    with_jax_export: bool = True,
    with_onnx: bool = False,
) -> dict[str, Any]:
    """SavedModel in `out_dir/saved_model`, `nsnet.jax_export` and `signature.json` beside it;
    with_onnx: `out_dir/onnx/{sample,recognize}.onnx` too (`onnx_export`, needs jax2onnx)."""
    os.makedirs(out_dir, exist_ok=True)
    saved = export_saved_model(trained, os.path.join(out_dir, "saved_model"), platforms)
    info: dict[str, Any] = {
        "saved_model": saved,
        "inputs": {k: list(v) for k, v in input_specs(trained.config).items()},
        "num_select": int(trained.config.model.num_select),
        "class_names": list(trained.class_names),
        "checkpoint": trained.checkpoint,
        "platforms": list(platforms) if platforms else [jax.default_backend()],
        "stablehlo_version": saved_model_stablehlo_version(saved),
        "signatures": SIGNATURES,
        "early_exit": early_exit_info(trained.config),
        "frames": "uint8 RGB 0..255, centre square crop of the short side, resized (bilinear)",
    }
    if with_jax_export:
        info["jax_export"] = export_jax(
            trained, os.path.join(out_dir, "nsnet.jax_export"), platforms
        )
    if with_onnx:
        from nsnet_jax.inference.onnx_export import export_onnx

        info["onnx"] = export_onnx(trained, os.path.join(out_dir, "onnx"))
    with open(os.path.join(out_dir, "signature.json"), "w") as f:
        json.dump(info, f, indent=1)
    return info
