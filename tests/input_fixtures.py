"""Session-scoped tiny datasets for input tests, built in tmp dirs (not ~/tensorflow_datasets)."""

from __future__ import annotations

import pytest

TINY = dict(num_train=24, num_test=13, num_frames=6, canvas_size=32)


def data_config(data_dir: str, **overrides):
    """A config.data-like ConfigDict for the tiny dataset (small sizes keep tests fast)."""
    from configs.default import get_config

    cfg = get_config().data
    cfg.name = "salient_fashion/tiny_test"
    cfg.data_dir = data_dir
    cfg.num_frames = TINY["num_frames"]
    cfg.sampler_size = 16
    cfg.recognizer_size = 32
    for key, value in overrides.items():
        cfg[key] = value
    return cfg


@pytest.fixture(scope="session")
def tiny_fashion_dir(tmp_path_factory) -> str:
    """Builds salient_fashion/tiny_test (24 train / 13 test, T=6, 32 px); returns its data_dir."""
    from input_pipeline.datasets.salient_fashion import salient_fashion_dataset_builder as sf

    data_dir = str(tmp_path_factory.mktemp("tfds"))
    config = sf.SalientFashionConfig(name="tiny_test", **TINY)
    sf.Builder(config=config, data_dir=data_dir).download_and_prepare()
    return data_dir
