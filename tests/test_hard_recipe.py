"""Switches of the hard-variant recipe: a frozen recognizer backbone."""

from __future__ import annotations

import os

import jax
import numpy as np

from nsnet_jax.models.nsnet import build_model
from nsnet_jax.train import checkpointing
from nsnet_jax.train import stages as train
from tests import tiny_train_config
from tests.tiny import set_fields

pytest_plugins = ("input_fixtures",)  # the session-scoped tiny salient_fashion dataset


class _NullWriter:
    def write_scalars(self, step, scalars):
        pass

    def flush(self):
        pass


def test_frozen_recognizer_backbone_keeps_its_weights_and_trains_the_head(
    tiny_fashion_dir, tmp_path
):
    config = set_fields(
        tiny_train_config.get_config(), data__data_dir=tiny_fashion_dir, stage="recognizer",
        model__recognizer__aggregation="maxpool_mlp", model__recognizer__freeze_backbone=True,
    )  # fmt: skip
    config.recognizer_training.weight_decay = 0.1  # would move the backbone if it were not frozen
    model = build_model(config)
    start = train.create_variables(config, model, train.data_mesh())
    train.train_and_evaluate(config, str(tmp_path), _NullWriter())
    final = checkpointing.restore_variables(os.path.join(tmp_path, "recognizer", "final"))
    for col in ("params", "batch_stats"):  # inference-mode BatchNorm: statistics stay too
        before = jax.tree.leaves(start[col]["recognizer"]["backbone"])
        after = jax.tree.leaves(final[col]["recognizer"]["backbone"])
        assert all(np.array_equal(a, b) for a, b in zip(before, after, strict=True))
    head_before = start["params"]["recognizer"]["mlp_hidden"]["kernel"]
    head_after = final["params"]["recognizer"]["mlp_hidden"]["kernel"]
    assert not np.allclose(head_before, head_after)
