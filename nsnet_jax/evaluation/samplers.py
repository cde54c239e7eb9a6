"""The samplers NSNet is compared with: motion-guided (MGSampler), per-frame saliency (SCSampler).

MGSampler (Zhi et al., ICCV 2021), training-free: the motion of frame t is the mean absolute
difference to frame t-1 on the sampler's low-resolution view; the K frames are where the
cumulative motion distribution crosses the centres (i + 1/2)/K of K equal intervals (its test-time
rule), so frames where motion rises fast are sampled densely. A repeat moves to the nearest unused
frame, so the recognizer always sees K distinct frames. Its cost: one subtraction and one absolute
value per pixel per consecutive pair, counted as (T - 1) * h * w * 3 MACs.

SCSampler (Korbar et al., ICCV 2019): a light classifier trained with video labels only, applied to
each frame; frames are ranked by their most confident class. Here a softmax-regression head on
frozen per-frame features (e.g. the sampler backbone's), fitted by full-batch gradient descent.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


def frame_motion(frames: np.ndarray) -> np.ndarray:
    """frames [B, T, h, w, 3] -> motion [B, T]: mean |x_t - x_{t-1}|, 0 for the first frame."""
    x = np.asarray(frames, np.float32)
    diff = np.abs(x[:, 1:] - x[:, :-1]).mean(axis=(2, 3, 4))
    return np.concatenate([np.zeros_like(diff[:, :1]), diff], axis=1)


def _distinct(idx: list[int], num_frames: int) -> list[int]:
    taken: set[int] = set()
    out = []
    for t in idx:
        step = 0
        while True:  # the nearest free frame, later first on a tie
            for c in (t + step, t - step):
                if 0 <= c < num_frames and c not in taken:
                    break
            else:
                step += 1
                continue
            break
        taken.add(c)
        out.append(c)
    return sorted(out)


def motion_guided_indices(frames: np.ndarray, k: int) -> np.ndarray:
    """[B, K] frames where the cumulative motion crosses (i + 1/2)/K, in temporal order."""
    motion = frame_motion(frames)
    b, t = motion.shape
    out = np.empty((b, k), np.int32)
    for v in range(b):
        m = motion[v] if motion[v].sum() > 0 else np.ones(t)  # static video: uniform
        cdf = np.cumsum(m) / m.sum()
        hit = [int(np.searchsorted(cdf, (i + 0.5) / k)) for i in range(k)]
        out[v] = _distinct([min(h, t - 1) for h in hit], t)
    return out


def motion_gmacs(config: Any) -> float:
    """GMACs per video of the frame differences on the sampler view."""
    d = config.data
    return (d.num_frames - 1) * d.sampler_size**2 * 3 / 1e9


def saliency_scores(frame_logits: np.ndarray) -> np.ndarray:
    """SCSampler's saliency [B, T]: each frame's largest class probability."""
    return np.asarray(jax.nn.softmax(jnp.asarray(frame_logits, jnp.float32), axis=-1).max(-1))


def saliency_indices(frame_logits: np.ndarray, k: int) -> np.ndarray:
    """[B, K] the K most salient frames (ties to the earlier frame), in temporal order."""
    order = np.argsort(-saliency_scores(frame_logits), axis=1, kind="stable")[:, :k]
    return np.sort(order, axis=1).astype(np.int32)


def fit_saliency_head(
    features: np.ndarray, labels: np.ndarray, *, steps: int = 300, lr: float = 0.5, l2: float = 1e-4
) -> dict[str, np.ndarray]:
    """Softmax regression from every frame's features [N, T, D] to its video's label [N, C].

    Video labels only: every frame is trained towards its video's (normalised multi-hot) label,
    so frames that show the class become confident and the rest stay near the class prior.
    """
    x = jnp.asarray(features, jnp.float32).reshape(-1, features.shape[-1])
    mu, sd = x.mean(0), x.std(0) + 1e-6
    x = (x - mu) / sd
    y = jnp.asarray(labels, jnp.float32)
    y = jnp.repeat(y / y.sum(-1, keepdims=True), features.shape[1], axis=0)
    params = {"w": jnp.zeros((x.shape[1], y.shape[1])), "b": jnp.zeros(y.shape[1])}

    def loss(p):
        logp = jax.nn.log_softmax(x @ p["w"] + p["b"])
        return -(y * logp).sum(-1).mean() + l2 * (p["w"] ** 2).sum()

    grad = jax.jit(jax.grad(loss))
    for _ in range(steps):
        params = jax.tree.map(lambda p, g: p - lr * g, params, grad(params))
    return {"w": np.asarray(params["w"]), "b": np.asarray(params["b"]), "mu": mu, "sd": sd}


def saliency_logits(head: dict[str, np.ndarray], features: np.ndarray) -> np.ndarray:
    """The fitted head on per-frame features [B, T, D] -> frame logits [B, T, C]."""
    x = (np.asarray(features, np.float32) - np.asarray(head["mu"])) / np.asarray(head["sd"])
    return x @ head["w"] + head["b"]
