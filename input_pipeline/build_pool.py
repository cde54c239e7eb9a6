"""Decode a split's videos in a process pool for TFDS's writer, with progress, ETA and a cache.

Each finished video is pickled into the cache folder (one file per video, written atomically), so a
build that is stopped and restarted loads those instead of decoding them again. Skipped videos are
not cached: a rerun tries them again (after you fixed them). TFDS orders examples by their hashed
key, so the pool's completion order does not change the written dataset.
"""

from __future__ import annotations

import hashlib
import logging
import multiprocessing
import os
import pickle
import time
from collections.abc import Callable, Iterator
from typing import Any

from input_pipeline import video_io

_PROCESS: Callable | None = None  # set in each worker by _init
PROGRESS_EVERY_S = 10.0


def _cache_file(cache: str, video_id: str) -> str:
    return os.path.join(cache, hashlib.sha1(video_id.encode()).hexdigest() + ".pkl")


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
        path = _cache_file(cache, entry.video_id)
        with open(path + ".tmp", "wb") as f:
            pickle.dump((key, example), f, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(path + ".tmp", path)
    return "ok", (key, example)


def _eta(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}h{seconds // 60 % 60:02d}m{seconds % 60:02d}s"


def generate(
    entries: list, process: Callable, report: Any, workers: int, cache: str | None
) -> Iterator[tuple[str, dict]]:
    """Yields (key, example) for every usable entry; writes the split's skip report at the end."""
    todo, done_cached = [], []
    if cache:
        os.makedirs(cache, exist_ok=True)
    for entry in entries:
        path = _cache_file(cache, entry.video_id) if cache else ""
        (done_cached if cache and os.path.isfile(path) else todo).append(entry)
    total, skipped, done = len(entries), [], 0
    start = last = time.monotonic()
    if done_cached:
        logging.warning(
            "video_folder %s: %d of %d videos already done in %s (not decoded again)",
            report.split,
            len(done_cached),
            total,
            cache,
        )
    for entry in done_cached:
        with open(_cache_file(cache, entry.video_id), "rb") as f:
            yield pickle.load(f)
        done += 1
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
                decoded = done - len(done_cached)
                rate = decoded / max(now - start, 1e-9)
                eta = (total - done) / rate if rate > 0 else 0.0
                print(
                    f"video_folder {report.split}: {done}/{total} videos "
                    f"({len(skipped)} skipped), {rate:.1f} videos/s, ETA {_eta(eta)}",
                    flush=True,
                )
    report.write(skipped, examples=total - len(skipped))
