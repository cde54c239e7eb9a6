"""Where the time goes: per-stage jitted timings of NSNet inference and of both train steps.

    python -m nsnet_jax.bench.stage_times --config=configs/activitynet.py [--batch=2]
        [--repeats=5] [--config.model.dtype=bfloat16] [--tiny]

One JSON line per part, named `<path>/<part>`, for three paths: `inference` (host->device copies,
sampler backbone on B*T low-res frames, temporal head, top-k + gather, recognizer on B*K frames,
device->host copy, and the whole jitted NSNet), `recognizer_step` (stage 1) and `sampler_step`
(stage 3): the whole jitted, donated train step next to forward and forward+backward of its parts
and the optimizer update. Each part is its own jitted function on the model's own methods
(`NSNet.embed` / `sample_features` / `recognize`, `selection.topk_indices` / `gather_frames`,
the trainer's loss functions and optimizer), timed in round-robin with the other parts of its path
(medians over `--repeats` after warm-up, `block_until_ready`). `<path>/sum_of_parts` puts the sum of
the parts that make up the whole beside the whole: what XLA gains by fusing across a boundary, or
what the split leaves out, is the `unexplained` share. GMACs per part are XLA's count of the same
function with grouped depthwise convolutions (as `costs.flops.count_gmacs`), and MFU is FLOPs /
time / the matmul peak measured in the same process (`bench.common.matmul_peak`).
`--tiny` shrinks the config (T=4, 32 px, small widths, one repeat) so CI runs it on a CPU.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from nsnet_jax.bench.common import (
    Emit,
    bench_context,
    make_emitter,
    matmul_peak,
    random_frames,
    random_variables,
    synthetic_train_batch,
)
from nsnet_jax.config_checks import with_overrides
from nsnet_jax.costs.flops import xla_flops
from nsnet_jax.costs.timing import time_interleaved
from nsnet_jax.models.layers import resolve_depthwise_impl
from nsnet_jax.models.nsnet import DTYPES, NSNet, build_model
from nsnet_jax.models.registry import BACKBONES
from nsnet_jax.models.selection import gather_frames, topk_indices
from nsnet_jax.train.step import (
    build_stage_optimizer,
    create_train_state,
    make_train_step,
    recognizer_loss_fn,
    sampler_loss_fn,
    trainable_parts,
    tsn_segments,
)

# T=4 candidates of 32 px and the tests' fast-compiling backbones: seconds on a CPU, for CI.
TINY = {
    "data.num_frames": 4,
    "data.sampler_size": 32,
    "data.recognizer_size": 32,
    "model.num_select": 2,
    "model.sampler.backbone": "patch_cnn",
    "model.sampler.width": 0.25,
    "model.recognizer.backbone": "resnet18",
    "model.recognizer.width": 0.125,
    "model.recognizer.mlp_dim": 16,
    "recognizer_training.frames_per_video": 2,
}
PATHS = ("inference", "recognizer_step", "sampler_step")


class Part(NamedTuple):
    """One timed call. `role`: 'part' (adds up to the whole), 'whole', 'copy' or 'detail' (a
    forward-only view of a part that is counted through its forward+backward)."""

    name: str
    call: Callable[[], Any]
    role: str
    flops: float | None = None


class Models(NamedTuple):
    """The timed model and its twin with grouped depthwise convolutions, for FLOP counting;
    `frozen_*` have a frozen sampler backbone, the only way `sample_features` takes features."""

    timed: NSNet
    count: NSNet
    frozen_timed: NSNet
    frozen_count: NSNet


def build_models(config: Any) -> Models:
    """The four variants share one parameter tree (freezing and the depthwise layout add none);
    without depthwise convolutions, or with grouped ones already, the timed models count."""
    frozen = with_overrides(config, {"model.sampler.freeze_backbone": True})
    grouped = {"model.depthwise_impl": "grouped"}
    backbones = (config.model.sampler.backbone, config.model.recognizer.backbone)
    same = resolve_depthwise_impl(config.model.depthwise_impl) == "grouped" or not any(
        BACKBONES[b].has_depthwise for b in backbones
    )
    timed, frozen_timed = build_model(config), build_model(frozen)
    return Models(
        timed,
        timed if same else build_model(with_overrides(config, grouped)),
        frozen_timed,
        frozen_timed if same else build_model(with_overrides(frozen, grouped)),
    )


def _part(
    name: str,
    make: Callable[[NSNet], Any],
    args: tuple,
    model: NSNet,
    count_model: NSNet | None,
    role: str = "part",
) -> Part:
    """A jitted part from `make(model)`; its FLOPs from `make(count_model)` on the same args."""
    fn = make(model)
    flops = None
    if count_model is not None:
        flops = xla_flops(fn if count_model is model else make(count_model), *args)
    return Part(name, lambda: fn(*args), role, flops)


def _copy_part(name: str, host: Any, device: Any) -> Part:
    return Part(name, lambda: jax.device_put(host, device), "copy")


def _fetch_part(name: str, out: Any, calls: int) -> Part:
    """device->host copy of fresh device arrays each call (a fetched array caches its host copy)."""
    copy = jax.jit(lambda tree: jax.tree.map(jnp.copy, tree))
    fresh = iter([jax.block_until_ready(copy(out)) for _ in range(calls)])
    return Part(name, lambda: jax.device_get(next(fresh)), "copy")


def _threaded(fn: Callable, holder: dict[str, Any], rest: tuple, carry: Callable) -> Callable:
    """A call to a donating function whose output (`carry(out)`) is its next first argument."""

    def call() -> Any:
        out = fn(holder["carry"], *rest)
        holder["carry"] = carry(out)
        return out

    return call


def inference_parts(
    models: Models, variables: Any, config: Any, batch: int, calls: int
) -> list[Part]:
    """Copies, backbone, temporal head, top-k + gather, recognizer; the whole jitted NSNet."""
    from nsnet_jax.inference import make_inference_fn

    device = jax.devices()[0]
    lo_np, hi_np = random_frames(config, batch)
    lo, hi = jax.device_put(lo_np, device), jax.device_put(hi_np, device)
    k = config.model.num_select
    m = models.timed

    def backbone(model):
        return jax.jit(lambda v, x: model.apply(v, x, method=NSNet.embed))

    def head(model):
        return jax.jit(lambda v, h: model.apply(v, h, method=NSNet.sample_features)["scores"])

    def recognizer(model):
        return jax.jit(lambda v, x: model.apply(v, x, method=NSNet.recognize)["logits"])

    def topk_gather(_):
        return jax.jit(lambda scores, frames: gather_frames(frames, topk_indices(scores, k)))

    # built in pipeline order: each part's first call (which compiles it) feeds the next part
    parts = [
        _copy_part("h2d_sampler_frames", lo_np, device),
        _copy_part("h2d_frames", hi_np, device),
    ]
    parts.append(_part("sampler_backbone", backbone, (variables, lo), m, models.count))
    features = parts[-1].call()
    fm, fc = models.frozen_timed, models.frozen_count
    parts.append(_part("temporal_head", head, (variables, features), fm, fc))
    scores = parts[-1].call()
    parts.append(_part("topk_gather", topk_gather, (scores, hi), m, m))
    parts.append(_part("recognizer", recognizer, (variables, parts[-1].call()), m, models.count))
    nsnet = _part(
        "end_to_end",
        lambda model: make_inference_fn(model).jitted,
        (variables, lo, hi),
        m,
        models.count,
        role="whole",
    )
    return [*parts, _fetch_part("d2h_outputs", nsnet.call(), calls), nsnet]


def _optimizer_part(tx: optax.GradientTransformation, params: Any) -> Part:
    """The optimizer update alone, donated and threaded as in the step (grads: a fixed tree)."""

    def update(params_and_state, grads):
        params, opt_state = params_and_state
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    fn = jax.jit(update, donate_argnums=0)
    grads = jax.tree.map(lambda p: jnp.full_like(p, 1e-3), params)
    # fresh buffers to donate, committed like the update's outputs (else the 2nd call recompiles)
    fresh = jax.jit(lambda p: (jax.tree.map(lambda x: x * 1, p), tx.init(p)))
    start = jax.device_put(fresh(params), jax.devices()[0])
    flops = xla_flops(fn, start, grads)
    call = _threaded(fn, {"carry": start}, (grads,), lambda out: out)
    return Part("optimizer_update", call, "part", flops)


def _step_parts(models: Models, variables: Any, config: Any, stage: str, data: Any) -> list[Part]:
    """The stage's optimizer update and whole jitted, donated step (as bench/train.py builds it)."""
    m = models.timed
    tx, total = build_stage_optimizer(config, stage, variables["params"], steps_per_epoch=1000)
    state = jax.device_put(
        jax.jit(lambda v: create_train_state(v, tx))(variables), jax.devices()[0]
    )
    rng = jax.random.key(0)

    def step(model):
        return jax.jit(make_train_step(config, model, stage, tx, total), donate_argnums=0)

    fn = step(m)
    flops = xla_flops(fn if models.count is m else step(models.count), state, data, rng)
    call = _threaded(fn, {"carry": state}, (data, rng), lambda out: out[0])
    whole = Part("step", call, "whole", flops)
    return [_optimizer_part(tx, variables["params"]), whole]


def _trainable(params: Any, config: Any, stage: str) -> dict[str, Any]:
    return {part: params[part] for part in trainable_parts(config, stage)}


def recognizer_step_parts(models: Models, variables: Any, config: Any, batch: int) -> list[Part]:
    """Stage 1: TSN segment gather, the recognizer's loss forward and forward+backward (grads of
    the trainable parts), the optimizer update, and the whole step."""
    stage = "recognizer"
    device = jax.devices()[0]
    host = synthetic_train_batch(config, stage, batch, seed=1)
    data = jax.device_put(host, device)
    params, stats = variables["params"], variables["batch_stats"]
    rng = jax.random.key(1)
    n = config.recognizer_training.frames_per_video

    def segments(_):
        return jax.jit(lambda frames, key: tsn_segments(frames, n, key))

    m, c = models.timed, models.count
    segment = _part("tsn_segments", segments, (data["frames"], rng), m, m)
    # pre-segmented frames: the loss's own tsn_segments then passes them through unchanged
    seg_data = {**data, "frames": segment.call()}

    def forward(model):
        return jax.jit(recognizer_loss_fn(config, model))

    def forward_backward(model):
        loss_fn = recognizer_loss_fn(config, model)

        def fwd_bwd(params, stats, batch, key):
            def loss(trainable):
                return loss_fn({**params, **trainable}, stats, batch, key)

            grad_fn = jax.value_and_grad(loss, has_aux=True)
            return grad_fn(_trainable(params, config, stage))

        return jax.jit(fwd_bwd)

    args = (params, stats, seg_data, rng)
    whole_and_opt = _step_parts(models, variables, config, stage, data)
    return [
        _copy_part("h2d_batch", host, device),
        segment,
        _part("recognizer_fwd", forward, args, m, c, role="detail"),
        _part("recognizer_fwd_bwd", forward_backward, args, m, c),
        *whole_and_opt,
    ]


def _train_embed(module: NSNet, frames: jax.Array) -> jax.Array:
    """The sampler backbone as the train step runs it (train-mode BatchNorm, or frozen)."""
    return module.sampler(frames, train=True, embed_only=True)["backbone_features"]


def sampler_step_parts(models: Models, variables: Any, config: Any, batch: int) -> list[Part]:
    """Stage 3: backbone forward and forward+backward, the temporal head alone, head + losses
    forward and forward+backward (the trainer's loss on the backbone's features), the optimizer
    update, and the whole step."""
    stage = "sampler"
    device = jax.devices()[0]
    host = synthetic_train_batch(config, stage, batch, seed=1)
    data = jax.device_put(host, device)
    params, stats = variables["params"], variables["batch_stats"]
    rng = jax.random.key(1)
    m, c = models.timed, models.count

    def backbone_forward(model):
        def fwd(variables, frames):
            return model.apply(variables, frames, method=_train_embed, mutable=["batch_stats"])

        return jax.jit(fwd)

    def backbone_forward_backward(model):
        def fwd_bwd(params, stats, frames, cotangent):
            def out(sampler):
                v = {"params": {**params, "sampler": sampler}, "batch_stats": stats}
                h, updates = model.apply(v, frames, method=_train_embed, mutable=["batch_stats"])
                return jnp.vdot(h.astype(jnp.float32), cotangent), updates

            return jax.value_and_grad(out, has_aux=True)(params["sampler"])

        return jax.jit(fwd_bwd)

    frames = data["sampler_frames"]
    backbone = _part("backbone_fwd", backbone_forward, (variables, frames), m, c, role="detail")
    features, _ = backbone.call()
    cotangent = jax.random.normal(jax.random.key(2), features.shape, jnp.float32)
    head_batch = {key: v for key, v in data.items() if key != "sampler_frames"}
    head_batch["train_progress"] = jnp.zeros((), jnp.float32)  # the step adds it (own_top_k)

    def head_forward(model):
        def fwd(variables, h):
            return model.apply(
                variables, h, train=True, method=NSNet.sample_features, mutable=["batch_stats"]
            )

        return jax.jit(fwd)

    def losses_forward(model):
        loss_fn = sampler_loss_fn(config, model)
        return jax.jit(lambda p, s, b, h, key: loss_fn(p, s, {**b, "sampler_features": h}, key))

    def losses_forward_backward(model):
        loss_fn = sampler_loss_fn(config, model)

        def fwd_bwd(params, stats, batch, h, key):
            def loss(trainable, h):
                return loss_fn(
                    {**params, **trainable}, stats, {**batch, "sampler_features": h}, key
                )

            grad_fn = jax.value_and_grad(loss, argnums=(0, 1), has_aux=True)
            return grad_fn(_trainable(params, config, stage), h)

        return jax.jit(fwd_bwd)

    fm, fc = models.frozen_timed, models.frozen_count
    head_args = (params, stats, head_batch, features, rng)
    whole_and_opt = _step_parts(models, variables, config, stage, data)
    return [
        _copy_part("h2d_batch", host, device),
        backbone,
        _part(
            "backbone_fwd_bwd", backbone_forward_backward, (params, stats, frames, cotangent), m, c
        ),
        _part("temporal_head_fwd", head_forward, (variables, features), fm, fc, role="detail"),
        _part("head_and_losses_fwd", losses_forward, head_args, fm, fc, role="detail"),
        _part("head_and_losses_fwd_bwd", losses_forward_backward, head_args, fm, fc),
        *whole_and_opt,
    ]


def _sig(value: float) -> float:
    """Four significant digits: a top-k takes microseconds, a train step seconds."""
    return float(f"{value:.4g}")


def measure_path(
    path: str,
    parts: list[Part],
    repeats: int,
    warmup: int,
    peak_flops_per_s: float,
    batch: int,
    emit: Emit,
) -> dict[str, dict[str, Any]]:
    """Times the path's parts round-robin, one line each, then the sum-of-parts line."""
    timings, _ = time_interleaved({p.name: p.call for p in parts}, repeats, warmup)
    records = {}
    for p in parts:
        t = timings[p.name]
        extra: dict[str, Any] = {k: _sig(t[k]) for k in ("median_s", "min_s", "max_s")}
        if p.flops is not None:
            extra["gmacs"] = _sig(p.flops / 2e9)
            extra["gmacs_per_video"] = _sig(p.flops / 2e9 / batch)
            extra["mfu"] = _sig(p.flops / t["median_s"] / peak_flops_per_s)
        records[p.name] = emit(
            f"{path}/{p.name}", _sig(t["median_s"]), "s", path=path, part=p.name, role=p.role,
            **extra,
        )  # fmt: skip
    summed = [p.name for p in parts if p.role == "part"]
    whole = next(p.name for p in parts if p.role == "whole")
    total = sum(timings[name]["median_s"] for name in summed)
    copies = sum(timings[p.name]["median_s"] for p in parts if p.role == "copy")
    whole_s = timings[whole]["median_s"]
    records["sum_of_parts"] = emit(
        f"{path}/sum_of_parts",
        _sig(total),
        "s",
        path=path,
        parts=summed,
        whole=whole,
        whole_s=_sig(whole_s),
        unexplained_s=_sig(whole_s - total),  # < 0: the whole fuses what the parts cannot
        unexplained_share=round((whole_s - total) / whole_s, 4),
        copies_s=_sig(copies),
        share_of_whole={name: round(timings[name]["median_s"] / whole_s, 4) for name in summed},
    )
    return records


def run_stage_times(
    config: Any,
    *,
    batch: int = 2,
    repeats: int = 5,
    warmup: int = 1,
    peak_dim: int = 0,
    paths: tuple[str, ...] = PATHS,
    stream: Any = None,
) -> dict[str, dict[str, Any]]:
    """Every path's part timings as JSON lines (to `stream`, default stdout); also returned."""
    emit = make_emitter(bench_context(config, batch), stream)
    start = time.perf_counter()
    n = peak_dim or (2048 if jax.default_backend() == "cpu" else 8192)
    peak = matmul_peak(DTYPES[config.model.dtype], n, repeats)
    emit("matmul_peak", round(peak["flops_per_s"] / 1e9, 2), "GFLOP/s", matmul_dim=n)
    models = build_models(config)
    variables = jax.device_put(random_variables(models.timed, config), jax.devices()[0])
    builders = {
        "inference": lambda: inference_parts(
            models, variables, config, batch, max(warmup, 1) + repeats
        ),
        "recognizer_step": lambda: recognizer_step_parts(models, variables, config, batch),
        "sampler_step": lambda: sampler_step_parts(models, variables, config, batch),
    }
    out = {}
    for path in paths:
        parts = builders[path]()
        out[path] = measure_path(path, parts, repeats, warmup, peak["flops_per_s"], batch, emit)
        del parts  # frees the path's compiled functions and donated state before the next
    emit("stage_times_wall_time", round(time.perf_counter() - start, 1), "s")
    return out


def main(argv: list[str]) -> None:
    """The command line: the flags and config handling of `python -m nsnet_jax.bench`."""
    from absl import flags

    from nsnet_jax import cli
    from nsnet_jax.config_checks import validate_config

    def define_flags() -> None:
        flags.DEFINE_integer("batch", 2, "Videos per batch (fixed for every measurement).")
        flags.DEFINE_integer("repeats", 5, "Timed rounds per path; medians are reported.")
        flags.DEFINE_integer("warmup", 1, "Untimed calls first (the first one compiles).")
        flags.DEFINE_integer("peak_dim", 0, "Matmul size for the peak; 0 = 2048 on CPU, else 8192.")
        flags.DEFINE_list("paths", list(PATHS), f"Which of {list(PATHS)} to time.")
        flags.DEFINE_bool("tiny", False, "Tiny shapes (T=4, 32 px) and one repeat, for CI.")

    def run(config, workdir, args):
        f = flags.FLAGS
        unknown = set(f.paths) - set(PATHS)
        if unknown:
            raise ValueError(f"--paths: {sorted(unknown)} not in {list(PATHS)}")
        repeats, peak_dim = f.repeats, f.peak_dim
        if f.tiny:
            config = with_overrides(config, TINY)
            validate_config(config)
            repeats, peak_dim = 1, peak_dim or 256
        run_stage_times(
            config,
            batch=f.batch,
            repeats=repeats,
            warmup=f.warmup,
            peak_dim=peak_dim,
            paths=tuple(p for p in PATHS if p in f.paths),
        )

    cli.run(run, define_extra=define_flags, argv=argv)


if __name__ == "__main__":
    main(sys.argv)
