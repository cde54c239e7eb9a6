"""The commands that take no config parse absl flags with run_tool and kept the names and
defaults their argparse / hand-rolled parsers had, so documented command lines still work."""

from __future__ import annotations

import importlib
import os

import pytest
from absl import flags

from nsnet_jax.pretrained.torch_pickle import DEFAULT_MAX_TENSOR_BYTES

# module -> {flag: default}, as the parsers before run_tool had them (plus the flags added since:
# build's --rebuild and --verbose, convert's --max_tensor_bytes, sampler_cache's --format and
# --jpeg_quality, and the commands written with run_tool from the start)
FLAGS = {
    "nsnet_jax.input_pipeline.build": dict(
        config=None,
        data_dir=None,
        manual_dir=None,
        workers=0,
        keep_cache=False,
        rebuild=False,
        verbose=False,
    ),
    "nsnet_jax.input_pipeline.inspect": dict(
        dataset=None, split="train", data_dir=None, index=0, out=None
    ),
    "nsnet_jax.input_pipeline.sampler_cache": dict(
        dataset=None,
        split="train",
        data_dir=None,
        size=128,
        out_dir=None,
        num_threads=os.cpu_count() or 1,
        format="uint8",
        jpeg_quality=90,
    ),
    "nsnet_jax.bench.stored_view": dict(
        workdir=None,
        cache_dir=None,
        split="test",
        data_dir=None,
        jpeg_quality=90,
        batch=32,
        max_videos=0,
        num_threads=os.cpu_count() or 1,
    ),
    "nsnet_jax.pretrained.convert": dict(
        backbone=None,
        src=None,
        out=None,
        format="auto",
        width=1.0,
        force=False,
        max_tensor_bytes=DEFAULT_MAX_TENSOR_BYTES,
    ),
    "nsnet_jax.bench.input_rates": dict(
        dataset="salient_fashion",
        split="test",
        data_dir=None,
        num_videos=128,
        sampler_size=128,
        recognizer_size=224,
        num_select=6,
        batch_size=16,
        num_threads=1,
        sampler_cache_dir="",
        accel_tflops=989.0,
        utilisation=0.3,
        only="",
    ),
    "nsnet_jax.bench.video_io": dict(video=None, make=False, num_frames=16, repeats=3, threads=0),
    "nsnet_jax.bench.relaxations": dict(
        repeats=200, reference_samples=100_000, sigma=0.05, swaps=None, loss_terms=False
    ),
}


@pytest.mark.parametrize("name", sorted(FLAGS))
def test_flag_names_and_defaults_are_kept(name):
    fv = flags.FlagValues()
    importlib.import_module(name).define_flags(fv)
    assert {flag: fv[flag].default for flag in fv} == FLAGS[name]


@pytest.mark.parametrize("name", sorted(FLAGS))
def test_help_lists_the_flags_and_exits_0(name, capsys):
    with pytest.raises(SystemExit) as exit_:
        importlib.import_module(name).main(["--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert all(f"--{flag}" in out or f"--[no]{flag}" in out for flag in FLAGS[name])


def test_an_unknown_flag_or_a_missing_required_one_exits_1(capsys):
    from nsnet_jax.input_pipeline import inspect

    for argv in (["--dataset=x", "--bogus=1"], ["--split=test"], ["--dataset=x", "stray"]):
        with pytest.raises(SystemExit) as exit_:
            inspect.main(argv)
        assert exit_.value.code == 1
        assert "Flags parsing error" in capsys.readouterr().err


def test_build_names_its_dataset_as_a_positional_argument(capsys):
    from nsnet_jax.input_pipeline import build

    with pytest.raises(SystemExit) as exit_:
        build.main(["--config=small", "--data_dir=/nonexistent"])
    assert exit_.value.code == 1
    assert "one of ['video_folder', 'salient_fashion']" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        build.main(["video_folder", "--config=default", "--data_dir=/nonexistent"])
    assert "video_folder needs --manual_dir" in capsys.readouterr().err
