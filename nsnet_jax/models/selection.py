"""Frame selection: a hard jit top-k for inference, and differentiable relaxations for ablations.

The paper trains the sampler without gradients through selection (the losses act on the scores).
`perturbed` (Gaussian-smoothed top-k: Berthet et al. 2020, as used for patch selection by
Cordonnier et al. 2021; its gradient estimated from the loss of each noisy selection, or by the
first-order chain rule through the smoothed selection matrix),
`gumbel` (Gumbel top-k, straight-through) and `sinkhorn` (soft top-k by entropy-regularised optimal
transport, Cuturi et al. 2019 / Xie et al. 2020, straight-through) let the recognizer's loss on the
selected frames reach the sampler. In every mode the forward pass is the hard selection, so the
recognizer sees exactly K frames, never an average of frames; only the backward pass differs.
All return frames in temporal order, so the recognizer sees a time-ordered clip.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import jax
import jax.numpy as jnp

TRAIN_MODES = ("none", "perturbed", "gumbel", "sinkhorn")


def topk_indices(scores: jax.Array, k: int) -> jax.Array:
    """Indices [B, K] of the K best frames, in temporal order.

    `lax.top_k` breaks ties towards the lower index, so equal scores select the earliest frames and
    the result is deterministic.
    """
    if scores.ndim != 2:
        raise ValueError(f"scores must be [batch, frames], got shape {scores.shape}")
    if not 1 <= k <= scores.shape[1]:
        raise ValueError(f"num_select K={k} must be in [1, T={scores.shape[1]}]")
    _, idx = jax.lax.top_k(scores, k)
    return jnp.sort(idx, axis=-1)


def topk_indices_by_score(scores: jax.Array, k: int) -> jax.Array:
    """Indices [B, K] of the K best frames, best first (early exit looks at them in this order).

    Ties go to the lower index, so `sort(topk_indices_by_score(s, K)[:, :j])` equals
    `topk_indices(s, j)` for every j <= K: a prefix of the ranking is NSNet-j's selection.
    """
    if scores.ndim != 2:
        raise ValueError(f"scores must be [batch, frames], got shape {scores.shape}")
    if not 1 <= k <= scores.shape[1]:
        raise ValueError(f"num_select K={k} must be in [1, T={scores.shape[1]}]")
    return jax.lax.top_k(scores, k)[1]


def gather_frames(frames: jax.Array, indices: jax.Array) -> jax.Array:
    """frames [B, T, ...] and indices [B, K] -> [B, K, ...]."""
    idx = indices.reshape(indices.shape + (1,) * (frames.ndim - 2))
    return jnp.take_along_axis(frames, idx, axis=1)


def indices_to_matrix(indices: jax.Array, num_frames: int, dtype=jnp.float32) -> jax.Array:
    """Selection matrices [B, K, T]: row k is the one-hot of the k-th selected frame."""
    return jax.nn.one_hot(indices, num_frames, dtype=dtype)


def apply_selection_matrix(matrix: jax.Array, frames: jax.Array) -> jax.Array:
    """[B, K, T] x [B, T, ...] -> [B, K, ...]; with a one-hot matrix this equals `gather_frames`."""
    flat = frames.reshape(frames.shape[:2] + (-1,))
    out = jnp.einsum("bkt,btd->bkd", matrix.astype(flat.dtype), flat)
    return out.reshape(matrix.shape[:2] + frames.shape[2:])


# ---- perturbed optimizer ------------------------------------------------------------------------


@partial(jax.custom_vjp, nondiff_argnums=(1, 2, 3))
def perturbed_topk(scores: jax.Array, k: int, num_samples: int, sigma: float, key: jax.Array):
    """E_Z[selection matrix of top-k(scores + sigma Z)], Z ~ N(0, I): [B, K, T], smooth in scores.

    Its Jacobian is E[(P(scores + sigma Z) - P(scores)) Z^T] / sigma (Berthet et al. 2020,
    Prop. 3.1; subtracting the unperturbed selection P(scores) changes nothing in expectation since
    E[Z] = 0). The backward pass estimates it from the same samples. Without that control variate
    the estimate is <P, g> Z / sigma even when every sample selects the same frames (the true
    Jacobian is then ~0): noise of size |<P, g>| / (sigma sqrt(S)) on every score, which is what
    kept the sampler from training (docs/ablations.md, bench `relaxations`).
    """
    out, _ = _perturbed_forward(scores, k, num_samples, sigma, key)
    return out


def perturbed_samples(
    scores: jax.Array, k: int, num_samples: int, sigma: float, key: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """Selection matrices [S, B, K, T] of top-k(scores + sigma Z) and the noise Z [S, B, T]."""
    idx, noise = noisy_topk_indices(scores, k, num_samples, sigma, key)
    return indices_to_matrix(idx, scores.shape[-1], scores.dtype), noise


def perturbed_vjp_estimate(
    matrices: jax.Array,
    noise: jax.Array,
    g: jax.Array,
    sigma: float,
    baseline: jax.Array | None,
) -> jax.Array:
    """g^T dE[P]/dscores [B, T] from samples; `baseline` [B, K, T] is the control variate."""
    if baseline is not None:
        matrices = matrices - baseline[None]
    # d out[b,k,t] / d scores[b,u] = E[(P[b,k,t] - P0[b,k,t]) Z[b,u]] / sigma
    return jnp.einsum("sbkt,sbu,bkt->bu", matrices, noise, g) / (matrices.shape[0] * sigma)


def _perturbed_forward(scores, k, num_samples, sigma, key):
    matrices, noise = perturbed_samples(scores, k, num_samples, sigma, key)
    return matrices.mean(axis=0), (matrices, noise)


def _perturbed_fwd(scores, k, num_samples, sigma, key):
    out, (matrices, noise) = _perturbed_forward(scores, k, num_samples, sigma, key)
    baseline = indices_to_matrix(topk_indices(scores, k), scores.shape[-1], scores.dtype)
    return out, (matrices, noise, baseline, key)


def _perturbed_bwd(k, num_samples, sigma, residuals, g):
    matrices, noise, baseline, key = residuals
    grad = perturbed_vjp_estimate(matrices, noise, g, sigma, baseline)
    key_ct = None if key is None else jnp.zeros(key.shape, jax.dtypes.float0)
    return grad, key_ct


perturbed_topk.defvjp(_perturbed_fwd, _perturbed_bwd)


def perturbed_selection(
    scores: jax.Array, k: int, key: jax.Array, *, num_samples: int = 100, sigma: float = 0.05
) -> jax.Array:
    """Hard selection matrix in the forward pass, the perturbed Jacobian in the backward pass.

    The recognizer then sees exactly the frames inference would select (for the same scores), while
    its loss still has a gradient with respect to the scores.
    """
    soft = perturbed_topk(scores, k, num_samples, sigma, key)
    hard = indices_to_matrix(topk_indices(jax.lax.stop_gradient(scores), k), scores.shape[-1])
    return hard + soft - jax.lax.stop_gradient(soft)


# ---- perturbed optimizer on the loss itself ----------------------------------------------------

PERTURBED_ESTIMATORS = ("loss", "first_order")


def noisy_topk_indices(
    scores: jax.Array, k: int, num_samples: int, sigma: float, key: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """Indices [S, B, K] (temporal order) of top-k(scores + sigma Z) and the noise Z [S, B, T]."""
    noise = jax.random.normal(key, (num_samples,) + scores.shape, dtype=scores.dtype)
    _, idx = jax.lax.top_k(jax.lax.stop_gradient(scores)[None] + sigma * noise, k)
    return jnp.sort(idx, axis=-1), noise


def perturbed_loss_surrogate(
    scores: jax.Array,
    sample_losses: jax.Array,
    base_losses: jax.Array,
    noise: jax.Array,
    sigma: float,
) -> jax.Array:
    """Per-video [B] term of value 0 with the gradient of the smoothed loss E_Z[L(s + sigma Z)].

    d/ds E[L(top-k(s + sigma Z))] = E[(L(top-k(s + sigma Z)) - L(top-k(s))) Z] / sigma (Gaussian
    smoothing; the unperturbed loss is a control variate with zero mean contribution). Unlike the
    first-order estimator it needs no dL/dP: each sample's loss is the recognizer's loss on the
    frames that sample selects, so a swap counts by what it does to the loss, not by a pixel-space
    linearisation of it (bench `relaxations --swaps`: that linearisation agrees with the true
    sign of a swap's loss change in about 55% of swaps).
    `sample_losses` [S, B] and `base_losses` [B] are treated as constants.
    """
    advantage = jax.lax.stop_gradient(sample_losses - base_losses[None])
    surrogate = (advantage * (noise * scores[None]).sum(-1)).mean(0) / sigma
    return surrogate - jax.lax.stop_gradient(surrogate)


# ---- Gumbel top-k, straight-through -------------------------------------------------------------


def relaxed_topk_mask(logits: jax.Array, k: int, temperature: float) -> jax.Array:
    """Soft k-hot mask [B, T] by k rounds of softmax, each removing the mass already taken.

    (Xie & Ermon 2019, "Reparameterizable subset sampling via continuous relaxations".)
    """
    mask = jnp.zeros_like(logits)
    onehot = jnp.zeros_like(logits)
    for _ in range(k):
        logits = logits + jnp.log(jnp.clip(1.0 - onehot, 1e-20, 1.0))
        onehot = jax.nn.softmax(logits / temperature, axis=-1)
        mask = mask + onehot
    return mask


def gumbel_selection(
    scores: jax.Array, k: int, key: jax.Array, *, temperature: float = 0.5
) -> jax.Array:
    """Gumbel top-k: hard selection of top-k(scores + G) forward, relaxed-mask gradient backward.

    With ST, every row of the hard selection matrix is multiplied by (1 + m - stop_grad(m)) at its
    selected frame, where m is the relaxed mask: the value is unchanged and the gradient reaches m.
    """
    gumbel = jax.random.gumbel(key, scores.shape, dtype=scores.dtype)
    logits = scores + gumbel
    soft_mask = relaxed_topk_mask(logits, k, temperature)
    hard = indices_to_matrix(topk_indices(jax.lax.stop_gradient(logits), k), scores.shape[-1])
    return straight_through_rows(hard, soft_mask)


# ---- Sinkhorn soft top-k, straight-through -----------------------------------------------------


def sinkhorn_topk_mask(
    scores: jax.Array, k: int, epsilon: float = 0.05, num_iters: int = 50
) -> jax.Array:
    """Soft k-hot mask [B, T] by entropy-regularised optimal transport (Xie et al. 2020).

    The T frames (mass 1/T each) are transported onto two anchors, "dropped" (mass (T-K)/T) and
    "kept" (mass K/T), at squared distance from the per-video min-max normalised score; the mask is
    T times the plan's "kept" column, so it sums to K and tends to the hard top-k as epsilon -> 0.
    Log-domain Sinkhorn with a fixed number of iterations, differentiated by unrolling.
    """
    t = scores.shape[-1]
    if not 1 <= k < t:
        raise ValueError(f"sinkhorn selection needs 1 <= K={k} < T={t}")
    lo = scores.min(-1, keepdims=True)
    hi = scores.max(-1, keepdims=True)
    x = (scores - lo) / (hi - lo + 1e-6)  # [B, T] in [0, 1]
    anchors = jnp.array([0.0, 1.0], scores.dtype)
    cost = jnp.square(x[..., None] - anchors)  # [B, T, 2]
    log_mu = jnp.full((t,), -jnp.log(t), scores.dtype)
    log_nu = jnp.log(jnp.array([(t - k) / t, k / t], scores.dtype))
    f = jnp.zeros(scores.shape, scores.dtype)
    g = jnp.zeros(scores.shape[:-1] + (2,), scores.dtype)

    def body(carry, _):
        f, g = carry
        f = epsilon * (log_mu - jax.nn.logsumexp((g[..., None, :] - cost) / epsilon, axis=-1))
        g = epsilon * (log_nu - jax.nn.logsumexp((f[..., :, None] - cost) / epsilon, axis=-2))
        return (f, g), None

    (f, g), _ = jax.lax.scan(body, (f, g), None, length=num_iters)
    plan = jnp.exp((f[..., :, None] + g[..., None, :] - cost) / epsilon)
    return t * plan[..., 1]


def straight_through_rows(hard: jax.Array, soft_mask: jax.Array) -> jax.Array:
    """hard [B, K, T] with each selected entry times (1 + m - stop_grad(m)) for the soft mask m.

    The value is the hard selection; the gradient of a loss on it reaches m at the selected frames.
    """
    return hard * (1.0 + soft_mask - jax.lax.stop_gradient(soft_mask))[:, None, :]


def sinkhorn_selection(
    scores: jax.Array, k: int, *, epsilon: float = 0.05, num_iters: int = 50
) -> jax.Array:
    """Hard top-k forward, the Sinkhorn soft top-k mask's gradient backward (straight-through)."""
    soft_mask = sinkhorn_topk_mask(scores, k, epsilon, num_iters)
    hard = indices_to_matrix(topk_indices(jax.lax.stop_gradient(scores), k), scores.shape[-1])
    return straight_through_rows(hard, soft_mask)


def selection_options(sel: Any) -> dict[str, Any]:
    """The keyword arguments of `training_selection` from the `selection` config block."""
    return {
        "num_samples": sel.num_samples,
        "sigma": sel.sigma,
        "temperature": sel.temperature,
        "epsilon": sel.sinkhorn_epsilon,
        "num_iters": sel.sinkhorn_iters,
    }


def training_selection(
    scores: jax.Array,
    k: int,
    mode: str,
    key: jax.Array | None,
    *,
    num_samples: int = 100,
    sigma: float = 0.05,
    temperature: float = 0.5,
    epsilon: float = 0.05,
    num_iters: int = 50,
) -> jax.Array:
    """Selection matrix [B, K, T] for a training step; `none` stops gradients at the scores."""
    if mode == "none":
        idx = topk_indices(jax.lax.stop_gradient(scores), k)
        return indices_to_matrix(idx, scores.shape[-1], scores.dtype)
    if key is None and mode in ("perturbed", "gumbel"):
        raise ValueError(f"selection.train_mode={mode!r} needs a PRNG key")
    if mode == "perturbed":
        return perturbed_selection(scores, k, key, num_samples=num_samples, sigma=sigma)
    if mode == "gumbel":
        return gumbel_selection(scores, k, key, temperature=temperature)
    if mode == "sinkhorn":
        return sinkhorn_selection(scores, k, epsilon=epsilon, num_iters=num_iters)
    raise ValueError(f"selection.train_mode={mode!r} is not one of {list(TRAIN_MODES)}")
