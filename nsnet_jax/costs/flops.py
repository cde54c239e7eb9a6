"""GMACs per video from XLA's cost analysis of the jitted sampler and recognizer.

XLA counts 2 FLOPs per multiply-add; the video-recognition literature's "GFLOPs" are multiply-adds,
so every number here is GMACs = XLA flops / 2 / 1e9. Nothing is executed: the functions are lowered
on abstract shapes, so even ResNet-50 at 224 px costs a few seconds.

    python -m nsnet_jax.flops --config=configs/activitynet.py
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from nsnet_jax.models.nsnet import NSNet, build_model, init_variables, input_shapes


def xla_flops(jitted: Any, *args: Any) -> float:
    """FLOPs of one call from XLA's cost analysis (2 per multiply-add), before running it."""
    analysis = jitted.lower(*args).cost_analysis()
    if not analysis:
        # JAX 0.11 on GPU gives no analysis before compilation, and the compiled one leaves out
        # the cuDNN convolutions (measured on an H200: 0.69 instead of 51 GFLOPs per video), so
        # count the same program lowered for the CPU, where every multiply-add is an HLO op.
        analysis = jitted.trace(*args).lower(lowering_platforms=("cpu",)).cost_analysis()
    if not analysis:  # compile the same program for a CPU device: its count is complete
        cpu = jax.sharding.SingleDeviceSharding(jax.devices("cpu")[0])
        on_cpu = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=cpu), args)
        analysis = jitted.lower(*on_cpu).compile().cost_analysis()
    if isinstance(analysis, (list, tuple)):  # older JAX: one dict per computation
        analysis = analysis[0] if analysis else None
    if not analysis or "flops" not in analysis:
        raise RuntimeError(
            f"XLA gave no FLOP count on backend {jax.default_backend()!r} (JAX {jax.__version__}); "
            "count on a CPU host instead: python -m nsnet_jax.flops --config=..."
        )
    return float(analysis["flops"])


def count_gmacs(config: Any) -> dict[str, Any]:
    """sampler on T frames, recognizer per frame, NSNet per video (sampler + K frames), all-T."""
    config = config.copy_and_resolve_references()
    with config.unlocked():
        config.model.depthwise_impl = "grouped"  # count the convolution, not the CPU workaround
    model = build_model(config)
    variables = jax.eval_shape(lambda: init_variables(model, config, jax.random.key(0)))
    lo, hi = input_shapes(config, batch_size=1)
    t, k = config.data.num_frames, config.model.num_select
    lo_spec = jax.ShapeDtypeStruct(lo, jnp.uint8)
    frame_spec = jax.ShapeDtypeStruct((1, 1) + hi[2:], jnp.uint8)
    all_spec = jax.ShapeDtypeStruct(hi, jnp.uint8)

    # The programs inference.jitted compiles (make_scores_fn, make_all_frames_fn and
    # make_inference_fn without a mesh), built here so that counting needs no inference code.
    scores = jax.jit(lambda v, lo: model.apply(v, lo, method=NSNet.sample)["scores"])
    recognize = jax.jit(lambda v, f: model.apply(v, f, method=NSNet.recognize)["logits"])
    end_to_end = jax.jit(lambda v, lo, hi: model.apply(v, lo, hi))
    sampler = xla_flops(scores, variables, lo_spec) / 2e9
    per_frame = xla_flops(recognize, variables, frame_spec) / 2e9
    e2e = xla_flops(end_to_end, variables, lo_spec, all_spec) / 2e9
    return {
        "sampler": config.model.sampler.backbone,
        "sampler_size": config.data.sampler_size,
        "recognizer": config.model.recognizer.backbone,
        "recognizer_size": config.data.recognizer_size,
        "num_frames": t,
        "num_select": k,
        "sampler_gmacs": round(sampler, 4),
        "sampler_gmacs_per_frame": round(sampler / t, 4),
        "recognizer_gmacs_per_frame": round(per_frame, 4),
        "video_gmacs": round(sampler + k * per_frame, 4),
        "end_to_end_gmacs": round(e2e, 4),
        "all_frames_gmacs": round(t * per_frame, 4),
        "uniform_gmacs": round(k * per_frame, 4),
        "units": "GMACs per video = XLA flops / 2 / 1e9",
    }
