"""The GMACs budget picks its threshold on held-out training videos and never reads test."""

import numpy as np

from nsnet_jax.evaluation import budget
from nsnet_jax.inference import exit_rules
from tests.tiny import tiny_config


def _prefix(first_conf):
    """Prefix logits [N, 2, 2] whose first-frame max probabilities are `first_conf`."""
    p = np.asarray(first_conf)
    first = np.log(np.stack([p, 1 - p], 1))
    return np.stack([first, np.log(np.full((len(p), 2), 0.5))], 1)


def test_budget_picks_the_largest_threshold_that_fits():
    prefix = _prefix([0.6, 0.7, 0.8, 0.9])  # 2 frames: 1.0 + 2 * 10 GMACs, 1 frame: 11
    kw = {"gmacs": exit_rules.gmacs_table(2, 1.0, 10.0)}
    t = budget.choose_threshold(prefix, 16.0, **kw)  # half the videos may use a second frame
    used = exit_rules.frames_used(exit_rules.confidences(prefix, "max_prob"), t)
    assert exit_rules.video_gmacs(used, kw["gmacs"]).mean() <= 16.0
    assert used.sum() == 6  # exactly two of four videos take a second frame
    assert budget.choose_threshold(prefix, 100.0, **kw) == 1.0  # everything fits: K_max
    assert budget.choose_threshold(prefix, 5.0, **kw) == 0.0  # below one frame: NSNet-1


def test_holdout_reads_only_the_first_videos_of_the_train_split(monkeypatch):
    config = tiny_config(eval__early_exit_holdout=5, eval__early_exit_budget_gmacs=1.0)
    seen = []

    def fake_create_dataset(data, split, *, train, global_batch_size, seed):
        seen.append((split, train))

        def batches():
            for step in range(100):
                n = np.arange(step * global_batch_size, (step + 1) * global_batch_size)
                yield {"mask": np.ones(len(n)), "id": n}
                if step > 3:
                    raise AssertionError("read past the held-out slice")

        return batches(), None

    monkeypatch.setattr(budget.pipeline, "create_dataset", fake_create_dataset)
    ids = budget.holdout_prefix_logits(config, lambda host: host["id"], batch_size=2)
    assert seen == [(config.data.train_split, False)]
    assert config.data.train_split != config.data.eval_split
    np.testing.assert_array_equal(ids, [0, 1, 2, 3, 4])


def test_a_holdout_split_training_never_reads_is_read_whole(monkeypatch):
    config = tiny_config(
        data__train_split="train[6:]",
        eval__early_exit_holdout_split="train[:6]",
        eval__early_exit_budget_gmacs=1.0,
    )
    seen = []

    def fake_create_dataset(data, split, *, train, global_batch_size, seed):
        seen.append(split)
        return iter([{"mask": np.ones(4), "id": np.arange(4)}] * 2), None

    monkeypatch.setattr(budget.pipeline, "create_dataset", fake_create_dataset)
    ids = budget.holdout_prefix_logits(config, lambda host: host["id"], batch_size=4)
    assert seen == ["train[:6]"] and len(ids) == 8  # the whole split, not the first 256
    assert budget.holdout_split(config) == ("train[:6]", None, False)
    assert budget.holdout_split(tiny_config(eval__early_exit_holdout=5))[1:] == (5, True)


def test_overlap_of_row_slices():
    assert budget.overlap("train[:1000]", "train")
    assert budget.overlap("train[:1000]", "train[999:]")
    assert not budget.overlap("train[:1000]", "train[1000:]")
    assert not budget.overlap("train[:10%]", "train[10%:]")  # percent: not checked
    assert not budget.overlap("train[:1000]", "test")


def test_validation_refuses_a_holdout_that_training_reads():
    import pytest

    from nsnet_jax.config_checks import validate_config

    with pytest.raises(ValueError, match="shares videos with config.data.train_split"):
        validate_config(tiny_config(eval__early_exit_holdout_split="train[:100]"))
    validate_config(
        tiny_config(data__train_split="train[100:]", eval__early_exit_holdout_split="train[:100]")
    )


def test_a_row_slice_of_a_split_reads_those_videos(tiny_fashion_dir):
    from nsnet_jax.input_pipeline import pipeline
    from tests.helpers import data_config

    cfg = data_config(tiny_fashion_dir)

    def ids(split):
        batches, meta = pipeline.create_dataset(
            cfg, split, train=False, global_batch_size=2, seed=0
        )
        return meta.num_examples, [
            v for b in batches for v, m in zip(b["video_id"], b["mask"]) if m
        ]

    n, every = ids("train")
    assert ids("train[2:]") == (n - 2, every[2:])
    assert ids("train[:2]") == (2, every[:2])
