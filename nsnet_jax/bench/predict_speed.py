"""predict's videos/s from video files, decode included: decode-aware beside all-T-at-full-size.

    python -m nsnet_jax.bench.predict_speed --config=configs/activitynet.py \\
        --videos=4 --width=640 --height=360 --seconds=20

Writes synthetic H.264 files (smooth moving scenes, 25 fps, keyframe every 2 s) to a temporary
folder, builds the config's NSNet with random weights and runs `predict` over the files twice
per mode, alternating modes; the first pass of each mode compiles and is not counted.
"""

from __future__ import annotations

import json
import os
import tempfile
from typing import Any

import numpy as np
from absl import flags
from PIL import Image

from nsnet_jax import cli

_VIDEOS = flags.DEFINE_integer("videos", 4, "Number of video files.")
_WIDTH = flags.DEFINE_integer("width", 640, "Frame width.")
_HEIGHT = flags.DEFINE_integer("height", 360, "Frame height.")
_SECONDS = flags.DEFINE_float("seconds", 20.0, "Length of each video.")
_BATCH = flags.DEFINE_integer("batch", 2, "predict's batch size.")
_REPEATS = flags.DEFINE_integer("repeats", 2, "Timed passes per mode.")
_ENGINE = flags.DEFINE_string("engine", "auto", "predict's --engine (auto, jax, tf, onnx, ...).")


def write_video(path: str, width: int, height: int, seconds: float, seed: int, fps: int = 25):
    """A smooth random scene panning sideways, H.264, one keyframe every 2 s."""
    import av

    rng = np.random.default_rng(seed)
    n = int(seconds * fps)
    base = rng.integers(0, 256, (6, 10, 3), dtype=np.uint8)
    big = np.asarray(Image.fromarray(base).resize((width * 2, height), Image.BICUBIC))
    with av.open(path, "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.gop_size = 2 * fps
        for t in range(n):
            x = int(t * width / max(1, n))
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(big[:, x : x + width]), "rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def main(config: Any, workdir: str | None, argv: list[str]) -> None:
    import jax

    from nsnet_jax.bench.common import random_variables
    from nsnet_jax.inference.predictor import PredictOptions, predict
    from nsnet_jax.inference.trained import TrainedModel
    from nsnet_jax.models.nsnet import build_model

    model = build_model(config)
    names = tuple(f"class_{i}" for i in range(config.data.num_classes))
    trained = TrainedModel(config, model, jax.device_put(random_variables(model, config)), names,
                           "random")  # fmt: skip
    folder = tempfile.mkdtemp(prefix="nsnet_predict_speed_")
    for i in range(_VIDEOS.value):
        write_video(os.path.join(folder, f"v{i}.mp4"), _WIDTH.value, _HEIGHT.value,
                    _SECONDS.value, seed=i)  # fmt: skip
    modes = {"decode_aware": False, "all_t_full_size": True}
    best: dict[str, list[float]] = {m: [] for m in modes}
    engines = set()
    for r in range(_REPEATS.value + 1):
        for mode, full in modes.items():
            opts = PredictOptions(batch_size=_BATCH.value, pipeline_views=full, log_every_s=1e9,
                                  engine=_ENGINE.value)  # fmt: skip
            summary = predict(trained, [folder], lambda line: None, opts)
            assert summary["errors"] == 0, summary
            engines.add(summary["engine"])
            if r > 0:
                best[mode].append(summary["videos_per_s"])
    for mode, rates in best.items():
        print(json.dumps({
            "name": f"predict_{mode}_videos_per_s", "value": float(np.median(rates)),
            "runs": rates, "config": config.data.name, "videos": _VIDEOS.value,
            "video": f"{_WIDTH.value}x{_HEIGHT.value} {_SECONDS.value:g}s 25fps h264",
            "batch": _BATCH.value, "engine": ",".join(sorted(engines)),
            "load_avg_1m": os.getloadavg()[0],
        }), flush=True)  # fmt: skip


if __name__ == "__main__":
    cli.run(main)  # --config, overrides, --distributed as everywhere
