"""read_video_file: seeking to keyframes gives exactly the frames of decoding everything."""

from __future__ import annotations

import av
import numpy as np
import pytest

from nsnet_jax.input_pipeline import video_io


def _write_gop_video(path: str, n: int, gop: int) -> None:
    """n distinct frames (a moving bar on a ramp), H.264 with B-frames (some of them not
    referenced, which exact mode skips decoding) and a keyframe every gop."""
    yy, xx = np.mgrid[0:48, 0:64]
    with av.open(path, "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        stream.options = {"g": str(gop), "keyint_min": str(gop), "sc_threshold": "0", "bf": "3"}
        for i in range(n):
            f = np.stack([(xx * 3 + i * 5) % 256, yy * 4, ((xx - i) % 64 < 8) * 200], -1)
            frame = av.VideoFrame.from_ndarray(f.astype(np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


@pytest.fixture(scope="module")
def gop_video(tmp_path_factory) -> str:
    path = str(tmp_path_factory.mktemp("video") / "gop.mp4")
    _write_gop_video(path, n=90, gop=12)
    return path


@pytest.mark.parametrize("num_frames,fps", [(7, 0.0), (16, 0.0), (45, 0.0), (5, 5.0)])
def test_exact_seek_equals_sequential_decode(gop_video, num_frames, fps, monkeypatch):
    kw = dict(short_side=0, quality=95, fps=fps)
    seq = video_io.read_video_file(gop_video, num_frames, mode="sequential", **kw)

    def no_fallback(*args):
        raise AssertionError("exact mode fell back to decoding everything")

    monkeypatch.setattr(video_io, "_decode_sequential", no_fallback)
    exact = video_io.read_video_file(gop_video, num_frames, mode="exact", **kw)
    assert len(exact) == num_frames
    assert exact == seq  # the same JPEG bytes: the same decoded pixels


def test_exact_mode_seeks_instead_of_decoding_everything(gop_video, monkeypatch):
    seeks = []
    real_seek = av.container.InputContainer.seek

    def counting_seek(self, *args, **kwargs):
        seeks.append(args)
        return real_seek(self, *args, **kwargs)

    monkeypatch.setattr(av.container.InputContainer, "seek", counting_seek)
    video_io.read_video_file(gop_video, 4, short_side=0, quality=95, mode="exact")
    assert len(seeks) >= 2  # frames 11, 33, 56, 78 lie in four different GOPs of 12


def test_keyframe_mode_returns_the_keyframe_at_or_before_each_frame(gop_video):
    kw = dict(short_side=0, quality=95)
    idx = video_io.sample_indices(90, 6)  # 7, 22, 37, 52, 67, 82
    keys = (idx // 12) * 12  # keyframes every 12 frames (fixed GOP, no scene cuts)
    everything = video_io.read_video_file(gop_video, 90, mode="sequential", **kw)
    got = video_io.read_video_file(gop_video, 6, mode="keyframe", **kw)
    assert got == [everything[k] for k in keys]


def test_unknown_mode_is_an_error(gop_video):
    with pytest.raises(ValueError, match="mode must be one of"):
        video_io.read_video_file(gop_video, 4, short_side=0, quality=95, mode="fast")
