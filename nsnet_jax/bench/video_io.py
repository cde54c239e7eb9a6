"""Time read_video_file's decode modes on one long video; prints JSON.

python -m nsnet_jax.bench.video_io --video=/tmp/long.mp4 [--make] [--num_frames=16]
    [--repeats=3] [--threads=0]
--make first writes a 3-minute 640x360 30 fps H.264 test video with 250-frame GOPs at --video.
"""

from __future__ import annotations

import json
import os
import sys
import time

import numpy as np
from absl import flags

from nsnet_jax.flag_parsing import run_tool
from nsnet_jax.input_pipeline import video_io


def make_test_video(path: str, seconds: int = 180, gop: int = 250) -> None:
    """A moving blob over a drifting ramp with a fine texture: decodes like camera footage."""
    import av

    rng = np.random.default_rng(0)
    texture = rng.normal(0, 6, (360, 640, 1))
    yy, xx = np.mgrid[0:360, 0:640]
    with av.open(path, "w") as container:
        stream = container.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = 640, 360, "yuv420p"
        stream.options = {
            "g": str(gop),
            "keyint_min": str(gop),
            "sc_threshold": "0",
            "preset": "veryfast",
        }
        for i in range(seconds * 30):
            cx, cy = 320 + 200 * np.sin(i / 40), 180 + 100 * np.cos(i / 55)
            blob = 120 * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / 3000.0)
            f = np.stack([(xx + i) % 256 * 0.5, yy * 0.6 + blob, 80 + blob * 0.5], -1) + texture
            frame = av.VideoFrame.from_ndarray(np.clip(f, 0, 255).astype(np.uint8), "rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def bench(video: str, num_frames: int, repeats: int, threads: int) -> dict:
    """Median seconds per mode; whether exact mode returned the sequential mode's bytes."""
    out: dict = {"video": video, "num_frames": num_frames, "threads": threads}
    frames = {}
    for mode in ("sequential", "exact", "keyframe"):
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            frames[mode] = video_io.read_video_file(
                video, num_frames, short_side=256, quality=90, mode=mode, threads=threads
            )
            times.append(time.perf_counter() - t0)
        out[f"{mode}_s"] = round(float(np.median(times)), 3)
    out["exact_identical_to_sequential"] = frames["exact"] == frames["sequential"]
    out["exact_speedup"] = round(out["sequential_s"] / out["exact_s"], 2)
    out["keyframe_speedup"] = round(out["sequential_s"] / out["keyframe_s"], 2)
    return out


def define_flags(fv: flags.FlagValues) -> None:
    """This command's flags (names and defaults as documented above)."""
    flags.DEFINE_string("video", None, "the video file to time", flag_values=fv)
    flags.mark_flag_as_required("video", flag_values=fv)
    flags.DEFINE_bool("make", False, "write the test video first", flag_values=fv)
    flags.DEFINE_integer("num_frames", 16, "frames to sample", flag_values=fv)
    flags.DEFINE_integer("repeats", 3, "timed repeats per mode", flag_values=fv)
    flags.DEFINE_integer("threads", 0, "FFmpeg threads (0: FFmpeg's choice)", flag_values=fv)


def main(argv: list[str] | None = None) -> int:
    return run_tool(_main, define_flags, argv, doc=__doc__)


def _main(args: flags.FlagValues, _: list[str]) -> int:
    if args.make or not os.path.isfile(args.video):
        make_test_video(args.video)
    print(json.dumps(bench(args.video, args.num_frames, args.repeats, args.threads)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
