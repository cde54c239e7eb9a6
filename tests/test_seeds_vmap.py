"""The sampler stage's step vmapped over seeds equals each seed's own step."""

import jax
import numpy as np
import pytest

from nsnet_jax.bench.common import synthetic_train_batch
from nsnet_jax.bench.seeds import seeds_train_step, stacked_train_states
from nsnet_jax.models.nsnet import build_model, init_variables
from nsnet_jax.train.step import build_stage_optimizer, make_train_step
from tests.tiny import tiny_config


@pytest.mark.parametrize("mode", ["none", "sinkhorn"])
def test_vmapped_seeds_step_matches_per_seed_steps(mode):
    config = tiny_config(selection__train_mode=mode, selection__sinkhorn_iters=5)
    model = build_model(config)
    params = init_variables(model, config, jax.random.key(0))["params"]
    tx, _ = build_stage_optimizer(config, "sampler", params, steps_per_epoch=10)
    states = stacked_train_states(config, model, tx, [0, 1])
    batches = [synthetic_train_batch(config, "sampler", 2, seed=s) for s in (0, 1)]
    stacked = {k: np.stack([b[k] for b in batches]) for k in batches[0]}
    keys = jax.random.split(jax.random.key(3), 2)
    new, metrics = jax.jit(seeds_train_step(config, model, "sampler", tx))(states, stacked, keys)
    step = jax.jit(make_train_step(config, model, "sampler", tx))
    for i in range(2):
        state_i = jax.tree.map(lambda x, i=i: x[i], states)
        ref, ref_metrics = step(state_i, batches[i], keys[i])
        np.testing.assert_allclose(metrics["loss"][i], ref_metrics["loss"], rtol=1e-5)
        for a, b in zip(jax.tree.leaves(ref.params), jax.tree.leaves(new.params), strict=True):
            np.testing.assert_allclose(b[i], a, atol=1e-5)
    # the seeds differ: their initialisations and losses are not the same
    assert not np.allclose(metrics["loss"][0], metrics["loss"][1])
