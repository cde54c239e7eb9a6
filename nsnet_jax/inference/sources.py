"""Where predict's videos come from: files, frame folders, list files and directory trees.

The forms are those `video_folder` builds from (input_pipeline/video_io.py): a video file
(mp4/avi/webm/mkv/mov/m4v), a frame folder (jpg/png frames in natural order), a list file (one
video per line, the first token its path, relative to the list file; labels after it are ignored)
and a directory searched recursively for both. What cannot be found is a `Source` with an error,
so predict writes one line for it and goes on.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator, Sequence

from nsnet_jax.input_pipeline.video_io import FRAME_EXTENSIONS, VIDEO_EXTENSIONS


@dataclasses.dataclass(frozen=True)
class Source:
    """One video to predict on; `error` is set when it cannot even be located."""

    path: str
    kind: str  # "file" | "frames" | "missing"
    error: str | None = None


def _is_frame_folder(path: str) -> bool:
    try:
        return any(n.lower().endswith(FRAME_EXTENSIONS) for n in os.listdir(path))
    except OSError:
        return False


def _walk(root: str) -> Iterator[Source]:
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        if dirpath != root and any(n.lower().endswith(FRAME_EXTENSIONS) for n in filenames):
            yield Source(dirpath, "frames")
            dirnames[:] = []  # a frame folder's subfolders are not videos of their own
            continue
        for name in sorted(filenames):
            if name.lower().endswith(VIDEO_EXTENSIONS):
                yield Source(os.path.join(dirpath, name), "file")


def _from_list(list_path: str) -> Iterator[Source]:
    base = os.path.dirname(os.path.abspath(list_path))
    with open(list_path) as f:
        for line in f:
            tokens = line.split()
            if not tokens or tokens[0].startswith("#"):
                continue
            path = tokens[0] if os.path.isabs(tokens[0]) else os.path.join(base, tokens[0])
            yield from _one(path, from_list=True)


def _one(path: str, from_list: bool = False) -> Iterator[Source]:
    if os.path.isfile(path):
        if path.lower().endswith(".txt") and not from_list:
            yield from _from_list(path)
        else:
            yield Source(path, "file")  # unknown extensions are tried; PyAV says if it cannot
    elif os.path.isdir(path):
        if _is_frame_folder(path):
            yield Source(path, "frames")
            return
        found = list(_walk(path))
        if not found:
            yield Source(
                path,
                "missing",
                f"no videos ({'/'.join(e[1:] for e in VIDEO_EXTENSIONS)}) or frame folders "
                f"found under {path}",
            )
        yield from found
    else:
        yield Source(path, "missing", f"not found: {path} (no such file or directory)")


def find_sources(inputs: Sequence[str]) -> list[Source]:
    """Every video named by `inputs` (files, frame folders, list files, directories), in order."""
    return [s for path in inputs for s in _one(os.path.expanduser(path))]
