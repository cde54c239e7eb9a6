"""Decode a split's videos in a process pool for TFDS's writer, with progress, ETA and a cache.

Each finished video's JPEG frames go into the cache folder (one `.frames.npz` per video, written
atomically, read with `allow_pickle=False`: a file planted there cannot run code), so a build that
is stopped and restarted loads those instead of decoding them again. A cache file is named by what
the frames depend on (the file's path, size and mtime; the folder by the frame-sampling config),
never by the label: labels always come from the list as it is now. Files of another format (the
pickles of older builds) or unreadable ones are counted, logged and never loaded. Skipped videos
are not cached: a rerun tries them again (after you fixed them). TFDS orders examples by their
hashed key, so the pool's completion order does not change the written dataset.
"""

from __future__ import annotations

import collections
import hashlib
import json
import logging
import multiprocessing
import os
import time
import zipfile
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from nsnet_jax.input_pipeline import video_io

_PROCESS: Callable | None = None  # set in each worker by _init
PROGRESS_EVERY_S = 10.0
CACHE_SUFFIX = ".frames.npz"


def _cache_file(cache: str, entry: Any) -> str:
    """The cache file of `entry`'s frames: named by the video file's path, size and mtime (a
    frame folder's own), and the frame count its list line expects."""
    try:
        st = os.stat(entry.path)
        stat = [st.st_size, st.st_mtime_ns]
    except OSError:
        stat = None
    key = json.dumps([os.path.abspath(entry.path), stat, entry.num_frames_hint])
    return os.path.join(cache, hashlib.sha1(key.encode()).hexdigest() + CACHE_SUFFIX)


def save_frames(path: str, frames: list[bytes]) -> None:
    """Writes JPEG frames as two plain arrays (bytes and end offsets), atomically."""
    data = np.frombuffer(b"".join(frames), np.uint8)
    ends = np.cumsum([len(f) for f in frames], dtype=np.int64)
    with open(path + ".tmp", "wb") as f:
        np.savez(f, data=data, ends=ends)
    os.replace(path + ".tmp", path)


def load_frames(path: str) -> list[bytes]:
    """The frames `save_frames` wrote; ValueError for anything else (object arrays included)."""
    with np.load(path, allow_pickle=False) as z:
        if not hasattr(z, "files") or sorted(z.files) != ["data", "ends"]:
            raise ValueError("not a frames file (expects arrays 'data' and 'ends')")
        data, ends = z["data"], z["ends"]
    if data.dtype != np.uint8 or ends.dtype != np.int64 or data.ndim != 1 or ends.ndim != 1:
        raise ValueError(f"bad arrays: data {data.dtype}{data.shape}, ends {ends.dtype}")
    starts = np.concatenate([[0], ends[:-1]])
    if ends.size and (ends[-1] != data.size or np.any(ends < starts)):
        raise ValueError("frame offsets do not fit the data")
    return [data[a:b].tobytes() for a, b in zip(starts, ends, strict=True)]


def _init(process: Callable) -> None:
    global _PROCESS
    _PROCESS = process


def _work(args: tuple[Any, str | None]) -> tuple[str, Any]:
    entry, cache = args
    try:
        key, example = _PROCESS(entry)
    except video_io.SkipVideo as e:
        return "skip", (entry.video_id, entry.path, str(e))
    if cache:
        save_frames(_cache_file(cache, entry), list(example["video"]))
    return "ok", (key, example)


def _eta(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}h{seconds // 60 % 60:02d}m{seconds % 60:02d}s"


def generate(
    entries: list, process: Callable, report: Any, workers: int, cache: str | None
) -> Iterator[tuple[str, dict]]:
    """Yields (key, example) for every usable entry; writes the split's skip report at the end."""
    todo, done_cached = [], []
    ignored: collections.Counter = collections.Counter()
    if cache:
        os.makedirs(cache, exist_ok=True)
        for name in os.listdir(cache):
            if not name.endswith((CACHE_SUFFIX, ".tmp")):
                ignored["not a frames file"] += 1
    for entry in entries:
        path = _cache_file(cache, entry) if cache else ""
        (done_cached if cache and os.path.isfile(path) else todo).append(entry)
    total, skipped, done = len(entries), [], 0
    start = last = time.monotonic()
    if done_cached:
        logging.warning(
            "video_folder %s: %d of %d videos already done in %s (not decoded again; labels "
            "from the list)",
            report.split,
            len(done_cached),
            total,
            cache,
        )
    for entry in done_cached:
        try:
            frames = load_frames(_cache_file(cache, entry))
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
            ignored[f"unreadable ({type(e).__name__})"] += 1
            todo.append(entry)  # decoded again below, and its cache file rewritten
            continue
        done += 1
        try:
            yield process(entry, frames=frames)
        except video_io.SkipVideo as e:
            logging.warning("Skipping %s: %s", entry.video_id, e)
            skipped.append((entry.video_id, entry.path, str(e)))
    from_cache = done
    if ignored:
        logging.warning(
            "video_folder %s: ignored %d files in %s, never loaded %s; their videos are decoded "
            "again",
            report.split,
            sum(ignored.values()),
            cache,
            dict(ignored),
        )
    ctx = multiprocessing.get_context("spawn")  # TF may be loaded in this process: do not fork
    with ctx.Pool(workers, initializer=_init, initargs=(process,)) as pool:
        for kind, payload in pool.imap_unordered(_work, [(e, cache) for e in todo], chunksize=1):
            done += 1
            if kind == "skip":
                logging.warning("Skipping %s: %s", payload[0], payload[2])
                skipped.append(payload)
            else:
                yield payload
            now = time.monotonic()
            if now - last >= PROGRESS_EVERY_S or done == total:
                last = now
                decoded = done - from_cache
                rate = decoded / max(now - start, 1e-9)
                eta = (total - done) / rate if rate > 0 else 0.0
                print(
                    f"video_folder {report.split}: {done}/{total} videos "
                    f"({len(skipped)} skipped), {rate:.1f} videos/s, ETA {_eta(eta)}",
                    flush=True,
                )
    report.write(skipped, examples=total - len(skipped))
