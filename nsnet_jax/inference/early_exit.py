"""Early exit that saves time: the recognizer runs frame by frame, only on videos still undecided.

Step j runs the recognizer on the j-th best-scored frame of each active video, adds its features
to the video's buffer (slot = the frame's temporal rank among the K_max best, so the full buffer
is fixed-K NSNet's input order) and aggregates the buffer. Exited videos leave the batch: the
active ones are compacted into the smallest of a few fixed bucket sizes (B, B/2, B/4, ...; rows
padded with a repeat), so the step compiles once per bucket size, never per batch composition.
The exit decision is `inference.exit_rules`', on the same host arrays, for any rule.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from nsnet_jax.inference import exit_rules
from nsnet_jax.inference.frame_aggregation import aggregate, frame_features
from nsnet_jax.models.nsnet import NSNet


def bucket_sizes(batch: int, count: int = 4) -> tuple[int, ...]:
    """(B, ceil(B/2), ceil(B/4), ...): `count` sizes at most, largest first, none below 1."""
    return tuple(sorted({max(1, -(-batch // 2**i)) for i in range(count)}, reverse=True))


@dataclass
class EarlyExitRunner:
    """Batched early exit for one model; `traces` counts compilations of the step (for tests)."""

    model: NSNet
    k_max: int
    threshold: float
    rule: str = "max_prob"
    buckets: tuple[int, ...] | None = None  # None: bucket_sizes(B)
    traces: int = 0
    _step: object = field(default=None, repr=False)

    def __post_init__(self) -> None:
        def step(variables, frames, rows, tidx, buf, slot, mask):
            self.traces += 1  # runs once per trace, i.e. once per bucket size
            chosen = frames[rows, tidx][:, None]  # [b, 1, H, W, 3]
            feats = frame_features(self.model, variables, chosen)[:, 0]
            buf = buf.at[jnp.arange(buf.shape[0]), slot].set(feats.astype(buf.dtype))
            return buf, aggregate(self.model, variables, buf, mask)

        self._step = jax.jit(step)

    def __call__(self, variables, frames: jax.Array, scores: np.ndarray) -> dict[str, np.ndarray]:
        """frames [B, T, H, W, 3] (device), sampler scores [B, T] -> logits [B, C], frames used."""
        b = frames.shape[0]
        order = np.argsort(-np.asarray(scores), axis=1, kind="stable")[:, : self.k_max]
        slots = np.argsort(np.argsort(order, axis=1), axis=1)  # temporal rank among the K_max
        buckets = self.buckets or bucket_sizes(b)
        buf = mask = prev = None
        logits_out = used = done = None
        for j in range(self.k_max):
            active = np.arange(b) if done is None else np.flatnonzero(~done)
            if not len(active):
                break
            size = min(s for s in buckets if s >= len(active))
            rows = np.concatenate([active, np.full(size - len(active), active[0])])
            if buf is None:
                d = jax.eval_shape(partial(frame_features, self.model, variables), frames[:1, :1])
                buf = np.zeros((b, self.k_max, d.shape[-1]), d.dtype)
                mask = np.zeros((b, self.k_max), bool)
            mask[active, slots[active, j]] = True
            args = (rows, order[rows, j], buf[rows], slots[rows, j], mask[rows])
            new_buf, logits = (np.asarray(x) for x in self._step(variables, frames, *args))
            n = len(active)
            buf[active] = new_buf[:n]
            logits = logits[:n]
            if logits_out is None:
                logits_out = np.zeros((b, logits.shape[-1]), logits.dtype)
                used, done = np.zeros(b, np.int32), np.zeros(b, bool)
                prev = np.zeros((b, 1, logits.shape[-1]))  # uniform distribution's logits
            pair = np.stack([prev[active, 0], logits], 1)
            conf = exit_rules.confidences(pair, self.rule)[:, 1]
            exits = (conf > self.threshold) | (j == self.k_max - 1)
            prev[active, 0] = logits
            logits_out[active] = logits
            used[active] = j + 1
            done[active[exits]] = True
        return {"logits": logits_out, "frames_used": used, "order": order}
