"""Test session set-up: 8 CPU devices, so mesh tests run without an accelerator; the shared
fixtures (helpers they use: tests/helpers.py).

The device count must be fixed before JAX starts its backend, hence module level, before any import
of jax. A persistent compilation cache makes the subprocess tests (multi-process, CLI) cheaper.
"""

import os

os.environ.setdefault("JAX_NUM_CPU_DEVICES", "8")
if "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (
        os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
    ).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault(
    "JAX_COMPILATION_CACHE_DIR", os.path.join(os.path.expanduser("~"), ".cache", "nsnet_jax_xla")
)
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "2")

import pytest  # noqa: E402 - after the environment above


@pytest.fixture(scope="session")
def tiny_fashion_dir(tmp_path_factory) -> str:
    """Builds salient_fashion/tiny_test (24 train / 13 test, T=6, 32 px); returns its data_dir.

    Built in a tmp dir, not ~/tensorflow_datasets.
    """
    from nsnet_jax.input_pipeline.datasets.salient_fashion import (
        salient_fashion_dataset_builder as sf,
    )
    from tests.helpers import TINY

    data_dir = str(tmp_path_factory.mktemp("tfds"))
    config = sf.SalientFashionConfig(name="tiny_test", **TINY)
    sf.Builder(config=config, data_dir=data_dir).download_and_prepare()
    return data_dir


@pytest.fixture(scope="session")
def tiny_workdir(tmp_path_factory) -> str:
    """A finished-looking tiny workdir (config.json, run_info.json, sampler/final)."""
    from tests.helpers import tiny_predict_config, write_workdir

    workdir = str(tmp_path_factory.mktemp("trained"))
    write_workdir(workdir, tiny_predict_config())
    return workdir
