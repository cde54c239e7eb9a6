"""videos/s of batched early exit against fixed-K NSNet on one pre-decoded evaluation batch.

    python -m nsnet_jax.bench.early_exit_speed --config=configs/salient_fashion.py \
        --workdir=/tmp/salient_fashion --config.eval.early_exit_thresholds=0.9,0.99

Prints one JSON line: for each fixed K of eval.num_select and each threshold (K_max = the largest
K), videos/s (median of eval.timing_repeats runs, the sampler included) and the frames used.
Pick the thresholds whose accuracy matches a fixed K from eval/results.json's `early_exit` rows.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import jax
import numpy as np

from nsnet_jax.costs.timing import median_seconds


def measure(config: Any, workdir: str) -> dict[str, Any]:
    from nsnet_jax.config_checks import eval_ks
    from nsnet_jax.inference.early_exit import EarlyExitRunner
    from nsnet_jax.inference.exit_rules import config_rule, parse_thresholds
    from nsnet_jax.inference.jitted import make_recognize_fn, make_scores_fn
    from nsnet_jax.input_pipeline import pipeline
    from nsnet_jax.models.nsnet import build_model
    from nsnet_jax.models.selection import topk_indices
    from nsnet_jax.train import checkpointing

    model = build_model(config)
    variables = checkpointing.restore_variables(os.path.join(workdir, "sampler", "final"))
    batches, _ = pipeline.create_dataset(
        config.data, config.data.eval_split, train=False,
        global_batch_size=config.eval_batch_size, seed=config.seed,
    )  # fmt: skip
    host = next(batches)
    frames, sampler_frames = jax.device_put(host["frames"]), jax.device_put(host["sampler_frames"])
    n, repeats, ks = len(host["frames"]), config.eval.timing_repeats, eval_ks(config)
    scores_fn, recognize = make_scores_fn(model), make_recognize_fn(model)
    topk = jax.jit(topk_indices, static_argnums=1)
    out: dict[str, Any] = {"batch": n, "fixed_k": {}, "early_exit": {}}
    for k in ks:
        fn = lambda k=k: recognize(variables, frames, topk(scores_fn(variables, sampler_frames), k))  # noqa: E731
        out["fixed_k"][k] = {"videos_per_s": n / median_seconds(fn, repeats)}
    for t in parse_thresholds(config.eval.early_exit_thresholds):
        runner = EarlyExitRunner(model, max(ks), t, config_rule(config))
        last: dict[str, Any] = {}

        def run(runner=runner, last=last):
            last.update(runner(variables, frames, np.asarray(scores_fn(variables, sampler_frames))))
            return last["logits"]

        secs = median_seconds(run, repeats)
        out["early_exit"][t] = {
            "videos_per_s": n / secs,
            "mean_frames": float(last["frames_used"].mean()),
            "compiles": runner.traces,
        }
    return out


def main(argv: list[str] | None = None) -> None:
    from nsnet_jax import cli

    cli.run(
        lambda config, workdir, args: print(json.dumps(measure(config, workdir))),
        workdir="required",
        argv=argv,
    )


if __name__ == "__main__":
    main(sys.argv)
