"""The console line a training loop logs every `log_every_steps`: steps/s, ETA, metrics."""

from __future__ import annotations

import logging
import time

log = logging.getLogger("nsnet_jax")


class Progress:
    """One console line per log step: steps/s, ETA, and the step's metrics."""

    def __init__(self, name: str, start: int, total: int) -> None:
        self.name, self.start, self.total = name, start, total
        self.t0 = None

    def update(self, step: int, metrics: dict) -> None:
        if self.t0 is None:  # exclude the first step: it includes compilation
            self.t0, self.s0 = time.time(), step

    def log(self, step: int, metrics: dict) -> None:
        elapsed = time.time() - (self.t0 or time.time())
        rate = (step - self.s0) / elapsed if elapsed > 0 and step > self.s0 else float("nan")
        eta = (self.total - step) / rate if rate == rate and rate > 0 else float("nan")
        shown = " ".join(f"{k}={v:.4g}" for k, v in sorted(metrics.items()))
        log.info(
            "%s step %d/%d (%.0f%%) %.2f steps/s ETA %s | %s",
            self.name, step, self.total, 100 * step / self.total, rate, _fmt_eta(eta), shown,
        )  # fmt: skip


def _fmt_eta(seconds: float) -> str:
    if seconds != seconds:
        return "?"
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}"
