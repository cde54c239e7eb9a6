"""The label-free check that the sampler's attention head is not inverted against its frame head."""

import logging
import os

import jax
import numpy as np

from nsnet_jax.evaluation import evaluate, sampler_heads
from nsnet_jax.models.nsnet import build_model
from nsnet_jax.sharding import data_mesh
from tests import tiny_train_config
from tests.helpers import write_workdir
from tests.tiny import set_fields, tiny_config


def test_topk_overlap_and_summary_by_hand():
    frame = np.array([[3.0, 2.0, 1.0, 0.0], [0.0, 1.0, 2.0, 3.0]])
    same = frame.copy()
    reverse = -frame
    np.testing.assert_array_equal(sampler_heads.topk_overlap(frame, same, 2), [1.0, 1.0])
    np.testing.assert_array_equal(sampler_heads.topk_overlap(frame, reverse, 2), [0.0, 0.0])
    half = np.array([[3.0, 0.0, 2.0, 1.0], [3.0, 0.0, 2.0, 1.0]])
    np.testing.assert_array_equal(sampler_heads.topk_overlap(frame, half, 2), [0.5, 0.5])
    evidence = np.array([[1, 0, 0, 0], [0, 0, 0, 1]])
    s = sampler_heads.summary(frame, reverse, 1, evidence)
    assert s == {
        "k": 1, "topk_overlap": 0.0, "chance": 0.25, "frame_head_recall": 1.0,
        "attention_recall": 0.0,
    }  # fmt: skip
    assert sampler_heads.inverted(s)
    assert not sampler_heads.inverted(sampler_heads.summary(frame, same, 1))


def test_check_warns_only_where_the_fused_score_uses_the_attention(caplog):
    heads = {"k": 2, "topk_overlap": 0.01, "chance": 0.125}
    for overrides, warns in (
        ({}, True),
        ({"model__sampler__fusion_beta": 0.0}, False),
        ({"loss__video_weight": 0.0}, False),
        ({"model__sampler__fusion": "product", "model__sampler__fusion_beta": 0.0}, True),
    ):
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="nsnet_jax"):
            sampler_heads.check(heads, tiny_config(**overrides))
        assert ("attention head disagrees" in caplog.text) == warns, overrides
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="nsnet_jax"):
        sampler_heads.check({**heads, "topk_overlap": 0.5}, tiny_config())
    assert caplog.text == ""


def test_evaluation_reports_the_heads_and_warns_on_an_inverted_attention(
    tiny_fashion_dir, tmp_path, caplog
):
    config = set_fields(tiny_train_config.get_config(), data__data_dir=tiny_fashion_dir)
    write_workdir(str(tmp_path), config)
    from nsnet_jax.train import checkpointing

    variables = checkpointing.restore_variables(os.path.join(tmp_path, "sampler", "final"))
    model = build_model(config)
    results = evaluate.evaluate(config, model, variables, data_mesh())
    heads = results["sampler_heads"]
    assert heads["k"] == config.model.num_select
    assert heads["chance"] == round(config.model.num_select / config.data.num_frames, 4)
    assert 0 <= heads["topk_overlap"] <= 1 and 0 <= heads["attention_recall"] <= 1

    # the attention head made the exact opposite of the frame head: the swapped solution
    inverted = jax.tree.map(lambda x: x, variables)
    sampler = inverted["params"]["sampler"]
    sampler["attention_head"] = jax.tree.map(lambda x: -x, sampler["frame_head"])
    with caplog.at_level(logging.WARNING, logger="nsnet_jax"):
        results = evaluate.evaluate(config, model, inverted, data_mesh())
    heads = results["sampler_heads"]
    assert heads["topk_overlap"] == 0.0
    assert heads["attention_recall"] <= heads["frame_head_recall"]
    assert "attention head disagrees" in caplog.text
    assert heads["attention_used"] is True
    assert "**Warning:**" in evaluate.markdown_table(results)
    # a recipe that ranks with the frame head alone leaves the attention untrained: no warning
    unused = {**results, "sampler_heads": {**heads, "attention_used": False}}
    assert "**Warning:**" not in evaluate.markdown_table(unused)
