"""The inspect command and the input benchmark run on a built dataset and print what they say."""

from __future__ import annotations

import json

from PIL import Image

from nsnet_jax.bench import input_rates
from nsnet_jax.input_pipeline import inspect as inspect_cli


def test_inspect_prints_schema_and_writes_contact_sheet(tiny_fashion_dir, tmp_path, capsys):
    out = tmp_path / "sheet.png"
    args = ["--dataset=salient_fashion/tiny_test", "--split=test", f"--data_dir={tiny_fashion_dir}"]
    assert inspect_cli.main([*args, f"--out={out}", "--index=2"]) == 0
    text = capsys.readouterr().out
    assert "FeaturesDict" in text and "frames_shape: [6, 32, 32, 3]" in text
    assert "label_name:" in text and "evidence: [" in text
    sheet = Image.open(out)
    assert sheet.size[0] > 6 * 32 and sheet.mode == "RGB"
    # Evidence frames carry a red border.
    assert (220, 0, 0) in {px for _, px in sheet.getcolors(1 << 16)}


def test_bench_prints_one_json_line_per_measurement(tiny_fashion_dir, tmp_path, capsys):
    from nsnet_jax.input_pipeline import sampler_cache

    sampler_cache.write_cache(
        "salient_fashion/tiny_test", "train", 16, str(tmp_path), data_dir=tiny_fashion_dir
    )
    argv = [
        "--dataset=salient_fashion/tiny_test",
        "--split=train",
        f"--data_dir={tiny_fashion_dir}",
        "--num_videos=8",
        "--batch_size=4",
        "--sampler_size=16",
        "--recognizer_size=32",
        "--num_select=2",
        f"--sampler_cache_dir={tmp_path}",
    ]
    assert input_rates.main(argv) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines() if x.startswith("{")]
    measures = {x["measure"]: x for x in lines}
    views = ("sampler_stage", "sampler_stage_cached", "sampler_stage_cached_step")
    views += ("recognizer_stage", "recognizer_stage_tsn")
    views += ("inference_decode_aware", "all_T")
    assert {"decode_sampler_center", "decode_recognizer_k"} <= set(measures)
    assert {f"iterator_{v}" for v in views} <= set(measures)
    assert {f"accelerator_{v}" for v in views} <= set(measures)
    assert all(x["videos_per_s"] > 0 for x in lines if "videos_per_s" in x)
    assert measures["decode_recognizer_k"]["frames_per_video"] == 2
    assert set(measures["decode_sampler_center"]["us_per_frame"]) == {
        "decode_us",
        "resize_us",
        "copy_us",
    }
    cores = measures["accelerator_sampler_stage"]
    ratio = cores["accel_videos_per_s"] / cores["host_videos_per_core_s"]
    assert abs(cores["host_cores_per_accelerator"] - ratio) <= 0.05 * ratio
