"""Build a dataset without Apache Beam: one process per core, progress with ETA, resumable.

python -m input_pipeline.build video_folder --config=NAME --manual_dir=DIR --data_dir=OUT
    [--workers=N] [--keep_cache]
python -m input_pipeline.build salient_fashion --config=small --data_dir=OUT

Writes the same dataset as `tfds build` (same examples, same bytes). Stop it at any time (Ctrl-C,
a killed job): the rerun with the same arguments skips the videos already decoded, which wait in
OUT/video_folder/NAME/build_cache-VERSION-HASH/ until the build finishes.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import signal
import sys

import tensorflow_datasets as tfds
from absl import app, flags

from nsnet_jax.flag_parsing import run_tool


def build_video_folder(
    config: str | tfds.core.BuilderConfig,
    manual_dir: str,
    data_dir: str,
    workers: int = 0,
    keep_cache: bool = False,
) -> tfds.core.DatasetBuilder:
    """Builds video_folder/`config` with `workers` processes (0: one per core)."""
    from input_pipeline.datasets.video_folder import video_folder_dataset_builder as vf

    workers = workers or os.cpu_count() or 1
    probe = vf.Builder(config=config, data_dir=data_dir)
    # The cache is only valid for these exact settings (T, size, fps, ...): name it by them.
    digest = hashlib.sha1(repr(probe.builder_config).encode()).hexdigest()[:10]
    cache = os.path.join(os.path.dirname(probe.data_dir), f"build_cache-{probe.version}-{digest}")
    builder = vf.Builder(config=config, data_dir=data_dir, workers=workers, cache_dir=cache)
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=manual_dir)
    )
    if not keep_cache and os.path.isdir(cache):
        shutil.rmtree(cache)
    return builder


def build_salient_fashion(config: str, data_dir: str) -> tfds.core.DatasetBuilder:
    """Builds salient_fashion/`config` in this process (about 2 minutes for the default)."""
    from input_pipeline.datasets.salient_fashion import salient_fashion_dataset_builder as sf

    builder = sf.Builder(config=config, data_dir=data_dir)
    builder.download_and_prepare()
    return builder


DATASETS = ("video_folder", "salient_fashion")


def define_flags(fv: flags.FlagValues) -> None:
    """This command's flags (names and defaults as documented above)."""
    flags.DEFINE_string("config", None, "the builder config, e.g. small or fcvid", flag_values=fv)
    flags.mark_flag_as_required("config", flag_values=fv)
    flags.DEFINE_string("data_dir", None, "where the dataset is written", flag_values=fv)
    flags.mark_flag_as_required("data_dir", flag_values=fv)
    flags.DEFINE_string("manual_dir", None, "video_folder: the manual_dir", flag_values=fv)
    flags.DEFINE_integer("workers", 0, "processes (0: one per core)", flag_values=fv)
    flags.DEFINE_bool("keep_cache", False, "keep decoded videos after the build", flag_values=fv)


def main(argv: list[str] | None = None) -> int:
    return run_tool(_main, define_flags, argv, doc=__doc__, positional=True)


def _main(args: flags.FlagValues, positional: list[str]) -> int:
    if len(positional) != 1 or positional[0] not in DATASETS:
        raise app.UsageError(f"name one dataset to build, one of {list(DATASETS)}: {positional}")
    dataset = positional[0]
    if dataset == "video_folder" and not args.manual_dir:
        raise app.UsageError("video_folder needs --manual_dir (see README, Data preparation)")
    # A killed job (SIGTERM, e.g. a scheduler's preemption) unwinds like Ctrl-C: the pool's
    # workers are stopped and the finished videos stay in the cache for the rerun.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    if dataset == "video_folder":
        builder = build_video_folder(
            args.config, args.manual_dir, args.data_dir, args.workers, args.keep_cache
        )
    else:
        builder = build_salient_fashion(args.config, args.data_dir)
    print(f"built {builder.info.full_name} in {builder.data_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
