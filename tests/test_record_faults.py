"""A damaged array_record shard names the file and the example; inspect says how many there are
(issue 11 item 8)."""

from __future__ import annotations

import glob
import os
import shutil

import pytest

from nsnet_jax.input_pipeline import inspect, pipeline, records
from tests.helpers import TINY, data_config


def _damaged_copy(tiny_fashion_dir: str, dest: str) -> str:
    """A copy of the tiny dataset with one byte of the train shard flipped; returns the shard."""
    shutil.copytree(tiny_fashion_dir, dest)
    (shard,) = glob.glob(os.path.join(dest, "**", "*-train.array_record-*"), recursive=True)
    data = bytearray(open(shard, "rb").read())
    data[len(data) // 2] ^= 0xFF
    open(shard, "wb").write(bytes(data))
    return shard


def test_flipped_byte_names_the_shard_and_the_example(tiny_fashion_dir, tmp_path):
    shard = _damaged_copy(tiny_fashion_dir, str(tmp_path / "tfds"))
    batches, _ = pipeline.create_dataset(
        data_config(str(tmp_path / "tfds"), num_threads=1),
        "train",
        train=False,
        global_batch_size=4,
        seed=0,
        process_index=0,
        process_count=1,
    )
    with pytest.raises(records.CorruptRecordError) as info:
        for _ in batches:
            pass
    message = str(info.value)
    assert shard in message
    assert "Cannot read example" in message and "Corrupted Riegeli" in message
    assert "rebuild the dataset" in message


def test_inspect_out_of_range_index_says_how_many(tiny_fashion_dir, capsys):
    n = TINY["num_train"]
    argv = [
        "--dataset=salient_fashion/tiny_test",
        "--split=train",
        f"--data_dir={tiny_fashion_dir}",
    ]
    assert inspect.main([*argv, f"--index={n}"]) == 2
    err = capsys.readouterr().err
    assert f"Example index {n} is out of range" in err
    assert f"has {n} examples (valid indices 0..{n - 1})" in err
    assert inspect.main([*argv, f"--index={n - 1}"]) == 0
