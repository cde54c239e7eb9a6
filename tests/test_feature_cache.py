"""sampler_training.feature_cache: the frozen sampler backbone runs once, the heads train on its
stored output, and that changes nothing but the cost."""

from __future__ import annotations

import os
import textwrap

import jax
import numpy as np
import pytest

from nsnet_jax import pipeline_run
from nsnet_jax.bench.common import synthetic_train_batch
from nsnet_jax.config_checks import validate_config
from nsnet_jax.models.nsnet import NSNet, build_model, init_variables
from nsnet_jax.sharding import data_mesh
from nsnet_jax.train import checkpointing, feature_cache, init
from nsnet_jax.train.step import build_stage_optimizer, create_train_state, make_train_step
from tests import tiny_train_config
from tests.helpers import TINY
from tests.processes import NullWriter, free_port, run_workers, worker_env
from tests.tiny import set_fields, tiny_config


def _frozen_config(**overrides):
    return tiny_config(
        model__sampler__freeze_backbone=True, model__sampler__temporal="conv1d", **overrides
    )


def test_a_step_on_stored_features_equals_the_step_on_the_frames():
    config = _frozen_config()
    model = build_model(config)
    variables = init_variables(model, config, jax.random.key(0))
    tx, _ = build_stage_optimizer(config, "sampler", variables["params"], steps_per_epoch=10)
    step = jax.jit(make_train_step(config, model, "sampler", tx))
    batch = synthetic_train_batch(config, "sampler", 4, seed=3)
    features = model.apply(variables, batch["sampler_frames"], method=NSNet.embed)
    assert features.shape[:2] == (4, config.data.num_frames)
    from_features = {k: v for k, v in batch.items() if k != "sampler_frames"}
    from_features["sampler_features"] = features

    on_frames, m_frames = step(create_train_state(variables, tx), batch, jax.random.key(1))
    on_cache, m_cache = step(create_train_state(variables, tx), from_features, jax.random.key(1))
    np.testing.assert_allclose(float(m_cache["loss"]), float(m_frames["loss"]), rtol=1e-5)
    for a, b in zip(jax.tree.leaves(on_cache.params), jax.tree.leaves(on_frames.params)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-6, rtol=1e-5)
    moved = on_cache.params["sampler"]["frame_head"]["kernel"]
    assert not np.allclose(moved, variables["params"]["sampler"]["frame_head"]["kernel"])


def test_stored_features_need_a_frozen_backbone():
    config = tiny_config(model__sampler__temporal="conv1d")
    model = build_model(config)
    variables = init_variables(model, config, jax.random.key(0))
    features = np.zeros((1, config.data.num_frames, 8), np.float32)
    with pytest.raises(ValueError, match="freeze_backbone=True"):
        model.apply(variables, features, method=NSNet.sample_features)


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({}, "set model.sampler.freeze_backbone=True"),
        (
            {"model__sampler__freeze_backbone": True, "sampler_training__feature_cache_views": 0},
            "expected an int >= 1",
        ),
        (
            {
                "model__sampler__freeze_backbone": True,
                "sampler_training__feature_cache_views": 4,
                "data__augment": False,
            },
            "would make them all the same",
        ),
        (
            {"model__sampler__freeze_backbone": True, "sampler_training__train_recognizer": True},
            "runs the recognizer on the selected frames",
        ),
        (
            {"model__sampler__freeze_backbone": True, "selection__train_mode": "perturbed"},
            "selection.train_mode='perturbed'",
        ),
    ],
)
def test_the_config_check_names_what_the_cache_cannot_serve(overrides, message):
    config = tiny_config(sampler_training__feature_cache=True, **overrides)
    with pytest.raises(ValueError, match=message):
        validate_config(config)


def _cache(n: int, views: int = 1) -> feature_cache.FeatureCache:
    """Video i's view v holds the number i + 1000 v everywhere."""
    value = np.arange(n)[:, None] + 1000 * np.arange(views)[None, :]
    return feature_cache.FeatureCache(
        features=value[..., None, None].astype(np.float32) * np.ones((1, 1, 3, 2), np.float32),
        labels=np.eye(5, dtype=np.float32)[np.arange(n) % 5],
        label=(np.arange(n) % 5).astype(np.int32),
        evidence=np.zeros((n, 3), bool),
        video_id=np.array([f"v{i}".encode() for i in range(n)], dtype=object),
        num_examples=n,
    )


def test_cached_batches_cover_every_video_each_epoch_and_resume_exactly():
    n, batch = 10, 4  # 2.5 batches per epoch: batches straddle epochs
    it = feature_cache.batches(_cache(n), seed=5, global_batch_size=batch)
    first = [next(it) for _ in range(10)]  # 40 positions = 4 epochs
    rows = np.concatenate([b["sampler_features"][:, 0, 0] for b in first]).astype(int)
    for epoch in range(4):
        assert sorted(rows[epoch * n : (epoch + 1) * n]) == list(range(n))
    assert not np.array_equal(rows[:n], rows[n : 2 * n])  # a new order every epoch
    for b in first:  # the rows of every key belong to the same videos
        ids = [int(v.decode()[1:]) for v in b["video_id"]]
        assert ids == b["sampler_features"][:, 0, 0].astype(int).tolist()
        assert np.argmax(b["labels"], -1).tolist() == [i % 5 for i in ids]
        assert (b["label"] == np.array(ids) % 5).all() and (b["mask"] == 1).all()
    resumed = feature_cache.batches(_cache(n), seed=5, global_batch_size=batch, start_step=7)
    for want in first[7:]:
        got = next(resumed)
        assert list(got["video_id"]) == list(want["video_id"])
    assert _cache(n).steps_per_epoch(batch) == 2
    with pytest.raises(ValueError, match="lower config.batch_size"):
        next(feature_cache.batches(_cache(3), seed=0, global_batch_size=4))


def test_each_step_draws_one_stored_view_per_video():
    it = feature_cache.batches(_cache(10, views=3), seed=1, global_batch_size=5)
    drawn = np.concatenate([next(it)["sampler_features"][:, 0, 0] for _ in range(40)])
    ids, views = drawn.astype(int) % 1000, drawn.astype(int) // 1000
    assert set(views.tolist()) == {0, 1, 2}  # all views, and nothing else
    assert sorted(ids[:10].tolist()) == list(range(10))  # still every video once per epoch


def test_the_sampler_stage_on_cached_features_trains_only_the_heads(tiny_fashion_dir, tmp_path):
    config = set_fields(
        tiny_train_config.get_config(), data__data_dir=tiny_fashion_dir,
        model__sampler__freeze_backbone=True, model__sampler__temporal="conv1d",
        sampler_training__feature_cache=True, sampler_training__feature_cache_views=2,
        sampler_training__num_steps=3,
    )  # fmt: skip
    workdir = str(tmp_path)
    for stage in ("recognizer", "pseudo_labels"):
        pipeline_run.train_and_evaluate(set_fields(config, stage=stage), workdir, NullWriter())
    model = build_model(config)
    start = init.create_variables(config, model, data_mesh(), seed=config.seed)
    summary = pipeline_run.train_and_evaluate(
        set_fields(config, stage="sampler"), workdir, NullWriter()
    )
    assert summary["sampler"]["steps"] == 3
    assert summary["sampler"]["steps_per_epoch"] == TINY["num_train"] // config.batch_size
    final = checkpointing.restore_variables(os.path.join(workdir, "sampler", "final"))
    for col in ("params", "batch_stats"):
        before = jax.tree.leaves(start[col]["sampler"]["backbone"])
        after = jax.tree.leaves(final[col]["sampler"]["backbone"])
        assert all(np.array_equal(a, b) for a, b in zip(before, after, strict=True))
    head_before = start["params"]["sampler"]["frame_head"]["kernel"]
    assert not np.allclose(head_before, final["params"]["sampler"]["frame_head"]["kernel"])


_WORKER = textwrap.dedent(
    """
    import json, sys
    import jax
    jax.distributed.initialize(sys.argv[1], num_processes=2, process_id=int(sys.argv[2]))
    from nsnet_jax.models.nsnet import build_model
    from nsnet_jax.train import feature_cache
    from nsnet_jax.sharding import data_mesh
    from nsnet_jax.train import init
    from tests import tiny_train_config
    from tests.tiny import set_fields

    config = set_fields(
        tiny_train_config.get_config(), data__data_dir=sys.argv[3],
        model__sampler__freeze_backbone=True, sampler_training__feature_cache=True,
        sampler_training__feature_cache_views=2,
    )
    model = build_model(config)
    mesh = data_mesh()
    variables = init.create_variables(config, model, mesh, seed=0)
    cache = feature_cache.extract(config, model, variables, mesh, seed=5)
    batch = next(feature_cache.batches(cache, seed=1, global_batch_size=8))
    print("RESULT " + json.dumps({
        "process": jax.process_index(),
        "ids": [v.decode() for v in cache.video_id],
        "sums": cache.features.sum(axis=(2, 3)).tolist(),
        "batch_ids": [v.decode() for v in batch["video_id"]],
    }), flush=True)
    """
)


@pytest.mark.slow
def test_two_processes_each_cache_their_own_share_with_the_same_features(tiny_fashion_dir):
    """Multi-host: disjoint shares that cover the split once, each video's features (both
    views) equal to a one-process extraction, and local batches drawn from the local share."""
    address = f"127.0.0.1:{free_port()}"
    args = [[address, str(i), tiny_fashion_dir] for i in range(2)]
    results = run_workers(_WORKER, args, worker_env(), timeout=300)
    r0, r1 = sorted(results, key=lambda r: r["process"])
    assert not set(r0["ids"]) & set(r1["ids"])
    assert len(r0["ids"]) + len(r1["ids"]) == TINY["num_train"]
    for r in (r0, r1):
        assert len(r["batch_ids"]) == 4 and set(r["batch_ids"]) <= set(r["ids"])

    config = set_fields(
        tiny_train_config.get_config(), data__data_dir=tiny_fashion_dir,
        model__sampler__freeze_backbone=True, sampler_training__feature_cache=True,
        sampler_training__feature_cache_views=2,
    )  # fmt: skip
    model = build_model(config)
    mesh = data_mesh()
    variables = init.create_variables(config, model, mesh, seed=0)
    one = feature_cache.extract(config, model, variables, mesh, seed=5)
    want = dict(zip([v.decode() for v in one.video_id], one.features.sum(axis=(2, 3))))
    assert len(want) == TINY["num_train"]
    for r in (r0, r1):
        for vid, sums in zip(r["ids"], r["sums"], strict=True):
            np.testing.assert_allclose(sums, want[vid], rtol=1e-4, atol=1e-3)
    assert not np.allclose([s[0] for s in want.values()], [s[1] for s in want.values()])
