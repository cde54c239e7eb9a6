"""Switches of the hard-variant recipes: frozen recognizer and sampler backbones."""

from __future__ import annotations

import os

import jax
import numpy as np

from nsnet_jax import pipeline_run
from nsnet_jax.config_checks import validate_config
from nsnet_jax.models.nsnet import build_model
from nsnet_jax.sharding import data_mesh
from nsnet_jax.train import checkpointing, init
from tests import tiny_train_config
from tests.processes import NullWriter
from tests.tiny import set_fields


def test_frozen_recognizer_backbone_keeps_its_weights_and_trains_the_head(
    tiny_fashion_dir, tmp_path
):
    config = set_fields(
        tiny_train_config.get_config(), data__data_dir=tiny_fashion_dir, stage="recognizer",
        model__recognizer__aggregation="maxpool_mlp", model__recognizer__freeze_backbone=True,
    )  # fmt: skip
    config.recognizer_training.weight_decay = 0.1  # would move the backbone if it were not frozen
    model = build_model(config)
    start = init.create_variables(config, model, data_mesh())
    pipeline_run.train_and_evaluate(config, str(tmp_path), NullWriter())
    final = checkpointing.restore_variables(os.path.join(tmp_path, "recognizer", "final"))
    for col in ("params", "batch_stats"):  # inference-mode BatchNorm: statistics stay too
        before = jax.tree.leaves(start[col]["recognizer"]["backbone"])
        after = jax.tree.leaves(final[col]["recognizer"]["backbone"])
        assert all(np.array_equal(a, b) for a, b in zip(before, after, strict=True))
    head_before = start["params"]["recognizer"]["mlp_hidden"]["kernel"]
    head_after = final["params"]["recognizer"]["mlp_hidden"]["kernel"]
    assert not np.allclose(head_before, head_after)


def test_frozen_sampler_backbone_keeps_its_weights_and_trains_the_heads():
    from nsnet_jax.bench.common import synthetic_train_batch
    from nsnet_jax.models.nsnet import init_variables
    from nsnet_jax.train.step import build_stage_optimizer, create_train_state, make_train_step
    from tests.tiny import tiny_config

    config = tiny_config(model__sampler__freeze_backbone=True, model__sampler__temporal="conv1d")
    config.sampler_training.weight_decay = 0.1  # would move the backbone if it were not frozen
    model = build_model(config)
    variables = init_variables(model, config, jax.random.key(0))
    tx, _ = build_stage_optimizer(config, "sampler", variables["params"], steps_per_epoch=10)
    state = create_train_state(variables, tx)
    step = jax.jit(make_train_step(config, model, "sampler", tx))
    for i in range(3):
        batch = synthetic_train_batch(config, "sampler", 2, seed=i)
        state, metrics = step(state, batch, jax.random.key(i))
    assert np.isfinite(float(metrics["loss"]))
    for col, now in (("params", state.params), ("batch_stats", state.batch_stats)):
        before = jax.tree.leaves(variables[col]["sampler"]["backbone"])
        after = jax.tree.leaves(now["sampler"]["backbone"])
        assert all(np.array_equal(a, b) for a, b in zip(before, after, strict=True))
    for head in ("frame_head", "temporal"):  # what learns on the frozen features
        before = jax.tree.leaves(variables["params"]["sampler"][head])
        after = jax.tree.leaves(state.params["sampler"][head])
        assert not all(np.allclose(a, b) for a, b in zip(before, after, strict=True))


def test_a_frozen_backbone_without_weights_is_named_in_a_warning(caplog):
    config = tiny_train_config.get_config()
    validate_config(config)
    assert "freeze_backbone" not in caplog.text
    with config.unlocked():
        config.model.sampler.freeze_backbone = True
    validate_config(config)  # a random-feature ablation stays possible
    assert "config.model.sampler.freeze_backbone=True but nothing loads" in caplog.text
    assert "pretrain.stills_variant" in caplog.text
