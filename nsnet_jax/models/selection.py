"""Frame selection: a hard jit top-k for inference, and differentiable relaxations for ablations.

The paper trains the sampler without gradients through selection (the losses act on the scores).
`perturbed` (Berthet et al. 2020, as used for patch selection by Cordonnier et al. 2021) and
`gumbel` (Gumbel top-k, straight-through) let the recognizer's loss on the selected frames reach
the sampler.
All three return frames in temporal order, so the recognizer sees a time-ordered clip.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp

TRAIN_MODES = ("none", "perturbed", "gumbel")


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

    Its Jacobian is E[P(scores + sigma Z) Z^T] / sigma (Berthet et al. 2020, Prop. 3.1), which is
    what the backward pass computes from the same samples.
    """
    out, _ = _perturbed_forward(scores, k, num_samples, sigma, key)
    return out


def _perturbed_forward(scores, k, num_samples, sigma, key):
    noise = jax.random.normal(key, (num_samples,) + scores.shape, dtype=scores.dtype)
    perturbed = scores[None] + sigma * noise  # [S, B, T]
    _, idx = jax.lax.top_k(perturbed, k)
    matrices = jax.nn.one_hot(jnp.sort(idx, axis=-1), scores.shape[-1], dtype=scores.dtype)
    return matrices.mean(axis=0), (matrices, noise)


def _perturbed_fwd(scores, k, num_samples, sigma, key):
    out, residuals = _perturbed_forward(scores, k, num_samples, sigma, key)
    return out, (residuals, key)


def _perturbed_bwd(k, num_samples, sigma, residuals, g):
    (matrices, noise), key = residuals
    # d out[b,k,t] / d scores[b,u] = E[P[b,k,t] Z[b,u]] / sigma
    grad = jnp.einsum("sbkt,sbu,bkt->bu", matrices, noise, g) / (num_samples * sigma)
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
    straight_through = 1.0 + soft_mask - jax.lax.stop_gradient(soft_mask)
    return hard * straight_through[:, None, :]


def training_selection(
    scores: jax.Array,
    k: int,
    mode: str,
    key: jax.Array | None,
    *,
    num_samples: int = 100,
    sigma: float = 0.05,
    temperature: float = 0.5,
) -> jax.Array:
    """Selection matrix [B, K, T] for a training step; `none` stops gradients at the scores."""
    if mode == "none":
        idx = topk_indices(jax.lax.stop_gradient(scores), k)
        return indices_to_matrix(idx, scores.shape[-1], scores.dtype)
    if key is None:
        raise ValueError(f"selection.train_mode={mode!r} needs a PRNG key")
    if mode == "perturbed":
        return perturbed_selection(scores, k, key, num_samples=num_samples, sigma=sigma)
    if mode == "gumbel":
        return gumbel_selection(scores, k, key, temperature=temperature)
    raise ValueError(f"selection.train_mode={mode!r} is not one of {list(TRAIN_MODES)}")
