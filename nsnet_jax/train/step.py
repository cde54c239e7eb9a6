"""The training state and the train step of each stage, as pure functions.

`make_train_step(config, model, stage, tx)` returns step(state, batch, rng) -> (state, metrics):
no Python state, no I/O, so the trainer jits it with donation and shardings, the bench times
exactly it, the tests call it directly, and it can be vmapped (e.g. over seeds).

    recognizer  stage 1: TSN-style video cross-entropy on `frames_per_video` segment frames
                (+ `best_frame_weight` x the cross-entropy of each video's best single frame)
    sampler     stage 3: the frame (suppression) and video losses on pseudo labels, plus the
                recognizer's loss on the selected frames when a relaxation or joint tuning is on
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import struct, traverse_util

from nsnet_jax import config_fields
from nsnet_jax.augment import augment_in_step
from nsnet_jax.models.nsnet import NSNet
from nsnet_jax.models.selection import (
    apply_selection_matrix,
    gather_frames,
    noisy_topk_indices,
    perturbed_loss_surrogate,
    selection_options,
    training_selection,
)
from nsnet_jax.train import losses, optim

TRAINED_STAGES = ("recognizer", "sampler")
LossFn = Callable[[Any, Any, dict, jax.Array], tuple[jax.Array, tuple[Any, dict]]]


@struct.dataclass
class TrainState:
    step: jax.Array
    params: Any
    batch_stats: Any
    opt_state: Any

    def to_dict(self) -> dict[str, Any]:
        """The checkpoint layout (the same keys as the plain dict state of earlier versions)."""
        return {
            "step": self.step,
            "params": self.params,
            "batch_stats": self.batch_stats,
            "opt_state": self.opt_state,
        }

    @classmethod
    def from_dict(cls, tree: dict[str, Any]) -> TrainState:
        return cls(**tree)


def create_train_state(variables: dict[str, Any], tx: optax.GradientTransformation) -> TrainState:
    """Step 0 over `variables` (params + batch_stats); jit it with out_shardings to place it."""
    return TrainState(
        step=jnp.zeros((), jnp.int32),
        params=variables["params"],
        batch_stats=variables["batch_stats"],
        opt_state=tx.init(variables["params"]),
    )


# ---- what each stage trains ---------------------------------------------------------------------


def stage_train_config(config: Any, stage: str) -> Any:
    return {"recognizer": config.recognizer_training, "sampler": config.sampler_training}[stage]


def stage_seed(config: Any, stage: str) -> int:
    """The stage's seed: `<stage>_training.seed` when >= 0, else `config.seed`.

    A seed of its own lets the sampler stage be repeated over seeds on one shared recognizer
    (the ablation runner) without changing a field the recognizer's result depends on.
    """
    own = stage_train_config(config, stage).get("seed", -1)
    return own if own >= 0 else config.seed


def uses_recognizer_in_sampler_stage(config: Any) -> bool:
    return config.sampler_training.train_recognizer or config.selection.train_mode != "none"


def trainable_parts(config: Any, stage: str) -> tuple[str, ...]:
    if stage == "recognizer":
        return ("recognizer",)
    return ("sampler", "recognizer") if config.sampler_training.train_recognizer else ("sampler",)


def input_views(config: Any, stage: str) -> tuple[str, ...]:
    """Which decoded views the stage's batches carry (input_pipeline's `views`)."""
    if stage == "recognizer":
        return ("recognizer",)
    return ("sampler", "recognizer") if uses_recognizer_in_sampler_stage(config) else ("sampler",)


def build_stage_optimizer(
    config: Any,
    stage: str,
    params: Any,
    steps_per_epoch: int,
    multipliers: Mapping[str, float] | None = None,
) -> tuple[optax.GradientTransformation, int]:
    """The stage's optimizer (frozen parts get zero updates) and its total number of steps.

    `multipliers`: the stage's parsed `lr_multipliers` (`Settings`; parsed here when None).
    """
    train_config = stage_train_config(config, stage)
    trainable = trainable_parts(config, stage)
    if multipliers is None:
        multipliers = config_fields.lr_multipliers(config, stage)
    frozen = {
        f"{part}/backbone": 0.0 for part in trainable if config.model[part].freeze_backbone
    }  # their gradient is already zero (stop_gradient); lr 0 also keeps weight decay off
    total = optim.num_train_steps(train_config, steps_per_epoch)
    tx = optim.build_optimizer(train_config, params, trainable, total, {**multipliers, **frozen})
    return tx, total


# ---- losses -------------------------------------------------------------------------------------


def merge_stats(old: Any, new: Any) -> Any:
    """Batch statistics after a sub-network's forward: its updates over the untouched rest."""
    flat = traverse_util.flatten_dict(old)
    flat.update(traverse_util.flatten_dict(new))
    return traverse_util.unflatten_dict(flat)


def tsn_segments(frames: jax.Array, n: int, rng: jax.Array) -> jax.Array:
    """One random frame from each of n equal segments of the T frames (TSN training sampling)."""
    b, t = frames.shape[:2]
    if n <= 0 or n >= t:
        return frames
    starts = jnp.floor(jnp.arange(n) * t / n).astype(jnp.int32)
    lengths = jnp.floor((jnp.arange(n) + 1) * t / n).astype(jnp.int32) - starts
    offsets = jax.random.randint(rng, (b, n), 0, lengths[None, :])
    idx = starts[None, :] + offsets
    return jnp.take_along_axis(frames, idx.reshape(b, n, 1, 1, 1), axis=1)


def own_top_k(config: Any) -> int:
    """pseudo_label.own_top_k: the sampler's own top-k frames added to its targets (0: off)."""
    return int(config.pseudo_label.own_top_k)


def pseudo_label_ratio(config: Any) -> float:
    r = config.pseudo_label.ratio
    return config.model.num_select / config.data.num_frames if r <= 0 else r


def sampler_view(batch: dict) -> jax.Array:
    """The sampler's frames; crops and flips them here when the input left that to the step
    (data.sampler_cache_augment='step': the batch carries `sampler_box` and `sampler_flip`)."""
    if "sampler_box" not in batch:
        return batch["sampler_frames"]
    return augment_in_step(batch["sampler_frames"], batch["sampler_box"], batch["sampler_flip"])


def recognizer_loss_fn(config: Any, model: NSNet) -> LossFn:
    """Stage 1 loss(params, batch_stats, batch, rng) -> (loss, (batch_stats, metrics))."""
    n_frames = config.recognizer_training.frames_per_video
    best_frame_weight = float(config.recognizer_training.best_frame_weight)

    def loss_fn(params, batch_stats, batch, rng):
        seg_rng, dropout_rng = jax.random.split(rng)
        frames = tsn_segments(batch["frames"], n_frames, seg_rng)
        out, updates = model.apply(
            {"params": params, "batch_stats": batch_stats},
            frames,
            train=True,
            method=NSNet.recognize,
            mutable=["batch_stats"],
            rngs={"dropout": dropout_rng},
        )
        loss = losses.softmax_cross_entropy(out["logits"], batch["labels"])
        metrics = {}
        if best_frame_weight > 0:
            best = losses.best_frame_cross_entropy(out["frame_logits"], batch["labels"])
            loss = loss + best_frame_weight * best
            metrics["best_frame"] = best
        top1 = jnp.take_along_axis(
            batch["labels"], jnp.argmax(out["logits"], -1)[:, None], axis=-1
        ).mean()
        metrics["top1"] = top1
        return loss, (merge_stats(batch_stats, updates["batch_stats"]), metrics)

    return loss_fn


def sampler_loss_fn(config: Any, model: NSNet) -> LossFn:
    """Stage 3 loss(params, batch_stats, batch, rng) -> (loss, (batch_stats, parts)).

    batch: sampler_frames (or sampler_features, train.feature_cache), labels, p_gt and correct
    (the pseudo-label table's rows), and frames when the recognizer takes part (differentiable
    selection or joint fine-tuning).
    """
    joint = config.sampler_training.train_recognizer
    sel = config.selection
    use_recognizer = uses_recognizer_in_sampler_stage(config)
    k = config.model.num_select
    ratio = pseudo_label_ratio(config)
    on_loss = sel.train_mode == "perturbed" and sel.perturbed_estimator == "loss"
    own_k = own_top_k(config)

    def loss_fn(params, batch_stats, batch, rng):
        if not joint:
            params = {**params, "recognizer": jax.lax.stop_gradient(params["recognizer"])}
        if "sampler_features" in batch:  # a frozen backbone's stored output (feature_cache)
            inputs, method = batch["sampler_features"], NSNet.sample_features
        else:
            inputs, method = sampler_view(batch), NSNet.sample
        out, updates = model.apply(
            {"params": params, "batch_stats": batch_stats}, inputs, train=True, method=method,
            mutable=["batch_stats"],
        )  # fmt: skip
        batch_stats = merge_stats(batch_stats, updates.get("batch_stats", {}))
        targets = losses.pseudo_labels(
            batch["p_gt"], batch["correct"], config.pseudo_label.rule,
            ratio=ratio, threshold=config.pseudo_label.threshold, share=batch.get("share"),
        )  # fmt: skip
        added = None
        if own_k > 0:  # from pseudo_label.own_from of the stage on: self-training
            own = losses.with_own_top_k(targets, out["scores"], own_k)
            own = jnp.where(batch["train_progress"] >= config.pseudo_label.own_from, own, targets)
            added = (own - targets).sum(axis=-1).mean()  # positives per video it adds
            targets = own
        loss, parts = losses.sampler_loss(
            out, targets, batch["labels"],
            frame_weight=config.loss.frame_weight, video_weight=config.loss.video_weight,
            nonsalient=config.loss.nonsalient, nonsalient_weight=config.loss.nonsalient_weight,
            pos_weight=config.loss.pos_weight,
        )  # fmt: skip
        if added is not None:
            parts = {**parts, "own_added": added}
        if use_recognizer:
            frames = batch["frames"].astype(jnp.float32)
            # the loss estimator's gradient comes from its own samples, not through the matrix
            mode = "none" if on_loss else sel.train_mode
            matrix = training_selection(out["scores"], k, mode, rng, **selection_options(sel))
            chosen = apply_selection_matrix(matrix, frames)
            rec, rec_updates = model.apply(
                {"params": params, "batch_stats": batch_stats}, chosen, train=joint,
                method=NSNet.recognize, mutable=["batch_stats"],
            )  # fmt: skip
            if joint:
                batch_stats = merge_stats(batch_stats, rec_updates["batch_stats"])
            rec_loss = losses.softmax_cross_entropy(rec["logits"], batch["labels"])
            if on_loss:
                rec_loss = rec_loss + perturbed_loss_term(
                    model, {"params": params, "batch_stats": batch_stats}, frames,
                    batch["labels"], out["scores"], rec["logits"], k, sel, rng,
                )  # fmt: skip
            loss = loss + sel.recognizer_loss_weight * rec_loss
            parts = {**parts, "recognizer": rec_loss}
        return loss, (batch_stats, parts)

    return loss_fn


def perturbed_loss_term(
    model: NSNet,
    variables: Any,
    frames: jax.Array,
    labels: jax.Array,
    scores: jax.Array,
    base_logits: jax.Array,
    k: int,
    sel: Any,
    rng: jax.Array,
) -> jax.Array:
    """Batch mean of `selection.perturbed_loss_surrogate`: value 0, the smoothed loss's gradient.

    Runs the recognizer (inference mode, no gradient) on the frames each of the S noisy top-k
    draws selects: S x K frames per video, the estimator's cost.
    """
    idx, noise = noisy_topk_indices(scores, k, sel.num_samples, sel.sigma, rng)
    chosen = jax.vmap(lambda i: gather_frames(frames, i))(idx)  # [S, B, K, ...]
    s, b = idx.shape[:2]
    logits = model.apply(
        jax.lax.stop_gradient(variables), chosen.reshape((s * b,) + chosen.shape[2:]),
        method=NSNet.recognize,
    )["logits"]  # fmt: skip
    sample_losses = losses.per_video_cross_entropy(logits.reshape(s, b, -1), labels[None])
    base = losses.per_video_cross_entropy(base_logits, labels)
    return perturbed_loss_surrogate(scores, sample_losses, base, noise, sel.sigma).mean()


LOSS_FNS: dict[str, Callable[[Any, NSNet], LossFn]] = {
    "recognizer": recognizer_loss_fn,
    "sampler": sampler_loss_fn,
}


# ---- the step -----------------------------------------------------------------------------------


def make_train_step(
    config: Any,
    model: NSNet,
    stage: str,
    tx: optax.GradientTransformation,
    total_steps: int = 0,
) -> Callable[[TrainState, dict, jax.Array], tuple[TrainState, dict]]:
    """step(state, batch, rng) -> (state, metrics) for `stage` ('recognizer' or 'sampler').

    total_steps: the stage's length, which pseudo_label.own_from (a fraction of it) needs.
    """
    if stage not in LOSS_FNS:
        raise ValueError(f"stage {stage!r} has no train step; choose one of {list(LOSS_FNS)}")
    loss_fn = LOSS_FNS[stage](config, model)
    needs_progress = stage == "sampler" and own_top_k(config) > 0
    if needs_progress and total_steps <= 0:
        raise ValueError(
            f"pseudo_label.own_top_k={own_top_k(config)} starts at a fraction of the sampler "
            "stage: pass make_train_step(..., total_steps=N)"
        )

    def step(state: TrainState, batch: dict, rng: jax.Array) -> tuple[TrainState, dict]:
        if needs_progress:
            batch = {**batch, "train_progress": state.step / total_steps}
        grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
        (loss, (batch_stats, parts)), grads = grad_fn(state.params, state.batch_stats, batch, rng)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        new_state = state.replace(
            step=state.step + 1,
            params=optax.apply_updates(state.params, updates),
            batch_stats=batch_stats,
            opt_state=opt_state,
        )
        grad_norm = jnp.sqrt(sum(jnp.sum(jnp.square(g)) for g in jax.tree.leaves(grads)))
        return new_state, {"loss": loss, "grad_norm": grad_norm, **parts}

    return step
