"""video_folder: a user's own videos (files or AR-Net frame folders) as T JPEG frames per video.

`python -m nsnet_jax.input_pipeline.build video_folder --config=NAME --manual_dir=DIR
--data_dir=OUT` (a process per core, resumable, no Beam), or
`tfds build input_pipeline/datasets/video_folder ...`.
Bad videos are skipped with a reason, counted, logged, and listed in
`OUT/video_folder/NAME/VERSION/skip_report-<split>.tsv`; the build never aborts on one video. A
split left with no video at all (an empty list, every line skipped) stops the build with one
`NoVideos` line naming the list file and the report, kept in OUT/video_folder/NAME/.
Under `tfds build`, configs with `beam=True` build through Apache Beam (DirectRunner here,
Dataflow/Spark/Flink on a cluster: see docs/data.md).
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import os
import pathlib
import re
import sys

import numpy as np
import tensorflow_datasets as tfds
from etils import epath

from nsnet_jax.input_pipeline.datasets.builder_location import FileLocated

try:
    from nsnet_jax.input_pipeline import manifest, video_io
except ModuleNotFoundError:  # `tfds build <folder>` loads this file by path, outside the package
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[3]))
    from nsnet_jax.input_pipeline import manifest, video_io

LAYOUT = """\
Expected manual_dir layout:
  MANUAL_DIR/classes.txt        one class name per line; line i is label i
  MANUAL_DIR/<split>.txt        one video per line, paths relative to MANUAL_DIR (or absolute):
      <video file> <label> [<label> ...]                  (mp4/avi/webm/mkv/mov, decoded with PyAV)
      <frame folder> <num_frames> <label> [<label> ...]   (AR-Net/OCSampler layout)
    labels are 0-based ints into classes.txt, or class names
  or, without <split>.txt: MANUAL_DIR/<split>/<class name>/<video file> (classes.txt optional)
"""


class NoVideos(Exception):
    """A split has no usable video; the message names its list file and the skip report."""

    one_line = True  # the build prints the message alone, exit code 2 (a user's fix)
    exit_code = 2


@dataclasses.dataclass(kw_only=True)
class VideoFolderConfig(tfds.core.BuilderConfig):
    """How to turn the manual_dir into fixed-T videos."""

    splits: tuple[str, ...] = ("train", "test")
    num_frames: int = 16
    fps: float = 0.0  # > 0: frames at this rate (centred window); 0: T uniform over the video
    frame_folder_fps: float = 0.0  # the rate frame folders were extracted at (for fps > 0)
    short_side: int = 256
    jpeg_quality: int = 90
    multi_label: bool = False
    keyframes_only: bool = False  # video files: the keyframe at or before each frame (approximate)
    beam: bool = False
    source_notes: str = ""  # where this dataset's split and class files come from


def _preset(name: str, splits: tuple[str, ...], multi_label: bool, notes: str):
    return VideoFolderConfig(
        name=name,
        description=f"{name} from the user's manual_dir. {notes}",
        splits=splits,
        multi_label=multi_label,
        beam=True,
        source_notes=notes,
    )


class Builder(FileLocated, tfds.core.GeneratorBasedBuilder):
    """T frames of each video of a folder, with labels from list files or class subfolders."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = LAYOUT
    BUILDER_CONFIGS = [
        VideoFolderConfig(name="default", description="A folder of your own videos."),
        _preset(
            "activitynet",
            ("train", "val"),
            True,
            "ActivityNet-v1.3 (200 classes): videos from the official download form, "
            "classes/splits from activity_net.v1-3.min.json (AR-Net's list files work as-is).",
        ),
        _preset(
            "fcvid",
            ("train", "test"),
            True,
            "FCVID (239 classes, multi-label): videos and the official train/test lists "
            "from the FCVID authors (Fudan); AR-Net's frame lists work as-is.",
        ),
        _preset(
            "mini_kinetics",
            ("train", "val"),
            False,
            "Mini-Kinetics (200 classes, ~121k/10k videos): the class list and video ids of "
            "Xie et al. 2018 (S3D-G) as used by AR-Net/OCSampler; videos from Kinetics-400.",
        ),
    ]
    DEFAULT_CONFIG_NAME = "default"

    def __init__(self, *, workers: int = 0, cache_dir: str | None = None, **kwargs):
        """`workers` > 0: decode videos in that many processes (`python -m
        nsnet_jax.input_pipeline.build`), keeping each finished video in `cache_dir` so a stopped
        build resumes without redoing it.
        """
        kwargs.setdefault("file_format", "array_record")
        super().__init__(**kwargs)
        self._workers = workers
        self._cache_dir = cache_dir
        # TFDS builds into a temporary `incomplete.*` folder renamed to this one at the end: the
        # skip report is written there and logged under the name it will have.
        self._final_data_dir = os.fspath(self.data_dir)

    def _info(self) -> tfds.core.DatasetInfo:
        cfg = self.builder_config
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict(
                {
                    "video": tfds.features.Video(
                        shape=(cfg.num_frames, None, None, 3), encoding_format="jpeg"
                    ),
                    "label": tfds.features.ClassLabel(),  # names come from the manual_dir
                    "labels": tfds.features.Sequence(tfds.features.ClassLabel()),
                    "video_id": tfds.features.Text(),
                    "evidence": tfds.features.Tensor(shape=(cfg.num_frames,), dtype=np.bool_),
                }
            ),
            supervised_keys=("video", "label"),
            metadata=tfds.core.MetadataDict(has_evidence=False, multi_label=cfg.multi_label),
        )

    def _split_generators(self, dl_manager):
        root = os.fspath(dl_manager.manual_dir)
        cfg = self.builder_config
        classes, entries, dropped = read_manual_dir(root, cfg.splits, cfg.multi_label)
        # what this dataset is built from, beside it (written into TFDS's incomplete.* folder)
        manifest.write(os.fspath(self.data_dir), manifest.describe_inputs(root, cfg, entries))
        self.info.features["label"].names = classes
        self.info.features["labels"].feature.names = classes
        sources = {s: os.path.join(root, f"{s}.txt") for s in cfg.splits}
        sources = {s: p if os.path.isfile(p) else os.path.join(root, s) for s, p in sources.items()}
        return {
            split: self._generate_examples(
                split, entries[split], classes, dropped[split], sources[split]
            )
            for split in cfg.splits
        }

    def _generate_examples(
        self, split: str, entries: list, classes: list[str], dropped: list, source: str = ""
    ):
        cfg = self.builder_config
        name = f"skip_report-{split}.tsv"
        report = _Report(
            os.path.join(os.fspath(self.data_dir), name),
            os.path.join(self._final_data_dir, name),
            split,
            list(dropped),
            len(entries) + len(dropped),
            source,
        )
        process = _Processor(cfg, classes, threads=1 if self._workers > 0 else 0)
        if self._workers > 0:
            from nsnet_jax.input_pipeline import build_pool  # noqa: PLC0415 - only the own build uses it

            cache = os.path.join(self._cache_dir, split) if self._cache_dir else None
            return build_pool.generate(entries, process, report, self._workers, cache)
        if cfg.beam:
            return _beam_transform(entries, process, report)
        return _python_generator(entries, process, report)


def read_manual_dir(
    root: str, splits: tuple[str, ...], multi_label: bool = True
) -> tuple[list[str], dict[str, list], dict[str, list[tuple[str, str, str]]]]:
    """Class names, the entries of each split, and the list lines dropped per split (with why).

    Errors name the path and the expected layout.
    """
    if not os.path.isdir(root):
        raise FileNotFoundError(f"manual_dir {root!r} does not exist.\n{LAYOUT}")
    classes_file = os.path.join(root, "classes.txt")
    classes = None
    if os.path.isfile(classes_file):
        with open(classes_file) as f:
            classes = [line.strip() for line in f if line.strip()]
    entries: dict[str, list] = {}
    dropped: dict[str, list[tuple[str, str, str]]] = {split: [] for split in splits}
    for split in splits:
        list_file = os.path.join(root, f"{split}.txt")
        split_dir = os.path.join(root, split)
        if os.path.isfile(list_file):
            entries[split], dropped[split] = _read_list_file(root, list_file, classes, multi_label)
        elif os.path.isdir(split_dir):
            entries[split] = _read_class_folders(split_dir)
        else:
            raise FileNotFoundError(
                f"manual_dir {root!r} has neither {split}.txt nor {split}/ for split "
                f"{split!r}.\n{LAYOUT}"
            )
    if classes is None:
        if any(os.path.isfile(os.path.join(root, f"{s}.txt")) for s in splits):
            raise FileNotFoundError(f"{classes_file} is missing.\n{LAYOUT}")
        classes = sorted({e.labels[0] for es in entries.values() for e in es})
    return classes, entries, dropped


def _resolve(root: str, path: str) -> str:
    return path if os.path.isabs(path) else os.path.join(root, path)


def _split_line(root: str, line: str) -> tuple[str, list[str]]:
    """(path, other tokens) of one list line; paths may contain spaces.

    A tab-separated line is `<path>\t<rest>`. Otherwise the path is the longest run of leading
    whitespace-separated tokens that names an existing file or folder (else the first token), so
    `my video.mp4 3` reads `my video.mp4`, not `my` with the labels `video.mp4 3`.
    """
    if "\t" in line:
        head, _, rest = line.partition("\t")
        return head.strip(), rest.split()
    spans = [m.span() for m in re.finditer(r"\S+", line)]
    for k in range(len(spans), 1, -1):
        candidate = line[spans[0][0] : spans[k - 1][1]]
        if os.path.exists(_resolve(root, candidate)):
            return candidate, [line[a:b] for a, b in spans[k:]]
    return line[spans[0][0] : spans[0][1]], [line[a:b] for a, b in spans[1:]]


def _label_of(token: str, index: dict[str, int]) -> int | None:
    """Class index of a label token (0-based int or class name); None if not in the list."""
    if token.lstrip("-").isdigit():
        i = int(token)
        return i if 0 <= i < len(index) else None
    return index.get(token)


def _read_list_file(
    root: str, list_file: str, classes: list[str] | None, multi_label: bool
) -> tuple[list, list[tuple[str, str, str]]]:
    """Entries of one list file, duplicates merged; and the lines dropped, with a reason.

    Lists made from per-segment annotations repeat a video once per segment. Multi-label configs
    keep one entry with the union of the labels; single-label configs keep the first line and
    drop later lines whose label differs (they go to the skip report).
    """
    index = {name: i for i, name in enumerate(classes or [])}
    by_id: dict[str, list] = {}  # video_id -> [entry, line number]
    dropped = []
    name = os.path.basename(list_file)
    with open(list_file) as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            rel, tokens = _split_line(root, line.rstrip("\r\n"))
            path = _resolve(root, rel)
            hint, labels = 0, tokens
            is_folder = os.path.isdir(path) or not rel.lower().endswith(video_io.VIDEO_EXTENSIONS)
            if is_folder and len(tokens) >= 2 and tokens[0].isdigit():
                hint, labels = int(tokens[0]), tokens[1:]
            video_id = os.path.relpath(path, root)
            bad = [t for t in labels if classes is not None and _label_of(t, index) is None]
            if bad:  # dropped per line, so a bad line does not spoil a duplicate's good one
                dropped.append((video_id, path, f"label {bad[0]!r} is not in the class list"))
                continue
            entry = video_io.Entry(video_id, path, tuple(labels), hint)
            if video_id not in by_id:
                by_id[video_id] = [entry, lineno]
                continue
            first, first_line = by_id[video_id]
            if multi_label:
                merged = tuple(dict.fromkeys(first.labels + entry.labels))
                by_id[video_id][0] = dataclasses.replace(first, labels=merged)
                continue
            a = [_label_of(t, index) for t in first.labels[:1]]
            b = [_label_of(t, index) for t in entry.labels[:1]]
            if a != b:
                dropped.append(
                    (
                        video_id,
                        path,
                        f"duplicate with a different label: {name} line {lineno} says "
                        f"{' '.join(entry.labels)!r}, line {first_line} says "
                        f"{' '.join(first.labels)!r}; kept line {first_line}",
                    )
                )
    return [e for e, _ in by_id.values()], dropped


def _read_class_folders(split_dir: str) -> list:
    out = []
    for cls in sorted(os.listdir(split_dir)):
        cls_dir = os.path.join(split_dir, cls)
        if not os.path.isdir(cls_dir):
            continue
        for name in sorted(os.listdir(cls_dir)):
            if name.lower().endswith(video_io.VIDEO_EXTENSIONS):
                out.append(video_io.Entry(f"{cls}/{name}", os.path.join(cls_dir, name), (cls,)))
    return out


class _Processor:
    """Entry -> (key, example); raises SkipVideo with a reason. Picklable for Beam workers."""

    def __init__(self, cfg: VideoFolderConfig, classes: list[str], threads: int = 0):
        self.cfg = cfg
        self.threads = threads  # FFmpeg threads per video; 1 when a process runs per core
        self.classes = list(classes)
        self.index = {name: i for i, name in enumerate(classes)}

    def _label(self, token: str) -> int:
        i = _label_of(token, self.index)
        if i is None:
            raise video_io.SkipVideo(f"label {token!r} is not in the class list")
        return i

    def __call__(self, entry, frames: list[bytes] | None = None) -> tuple[str, dict]:
        """`frames`: the video's JPEG frames decoded earlier (the build's cache). The labels always
        come from `entry`, i.e. from the list file as it is now."""
        cfg = self.cfg
        if not entry.labels:
            raise video_io.SkipVideo("no label")
        labels = list(dict.fromkeys(self._label(t) for t in entry.labels))
        if not cfg.multi_label and len(labels) > 1:
            labels = labels[:1]
        if frames is None:
            frames = self.frames(entry)
        example = {
            "video": frames,
            "label": labels[0],
            "labels": labels,
            "video_id": entry.video_id,
            "evidence": np.zeros(cfg.num_frames, bool),
        }
        return entry.video_id, example

    def frames(self, entry) -> list[bytes]:
        """The T JPEG frames of one video; what they depend on is the file and this config."""
        cfg = self.cfg
        kw = dict(short_side=cfg.short_side, quality=cfg.jpeg_quality)
        if os.path.isdir(entry.path):
            step = cfg.frame_folder_fps / cfg.fps if cfg.fps > 0 and cfg.frame_folder_fps else 0.0
            return video_io.read_frame_folder(
                entry.path, cfg.num_frames, fps_step=step, expected=entry.num_frames_hint, **kw
            )
        mode = "keyframe" if cfg.keyframes_only else "exact"
        return video_io.read_video_file(
            entry.path, cfg.num_frames, fps=cfg.fps, mode=mode, threads=self.threads, **kw
        )


@dataclasses.dataclass
class _Report:
    """Where one split's skip report is written, the name it is logged under, and its rows."""

    write_path: str
    shown_path: str
    split: str
    dropped: list  # list lines dropped before decoding (conflicting duplicates)
    total: int  # list lines, dropped ones included
    source: str = ""  # the split's list file (or class folder tree), named when nothing is left

    def write(self, skipped: list, examples: int | None = None) -> None:
        """Writes the report; `examples` == 0 (no video left) raises `NoVideos` instead of
        letting TFDS fail with "No examples were yielded"."""
        rows = sorted(self.dropped + list(skipped))
        reasons = collections.Counter(r.split(":")[0] for _, _, r in rows)
        lines = ["video_id\tpath\treason"] + [f"{v}\t{p}\t{r}" for v, p, r in rows]
        if examples == 0:  # the build fails and TFDS removes its folder: keep the report beside
            name = os.path.basename(self.shown_path)  # OUT/video_folder/NAME/VERSION/<name>
            kept = os.path.join(os.path.dirname(os.path.dirname(self.shown_path)), name)
            epath.Path(kept).parent.mkdir(parents=True, exist_ok=True)
            epath.Path(kept).write_text("\n".join(lines) + "\n")
            source = self.source or f"the {self.split} split"
            if not rows:
                raise NoVideos(
                    f"video_folder {self.split}: {source} lists no video: add one line per "
                    "video, '<video file> <label>' or '<frame folder> <num_frames> <label>' "
                    "(see the manual_dir layout in the README), or leave the split out of the "
                    "config's splits"
                )
            counts = ", ".join(f"{n} {reason}" for reason, n in reasons.most_common())
            raise NoVideos(
                f"video_folder {self.split}: no usable video in {source}, {len(rows)} skipped "
                f"({counts}); the reason per line is in {kept}: fix those lines (or the "
                "files they name) and rerun"
            )
        epath.Path(self.write_path).write_text("\n".join(lines) + "\n")
        logging.warning(
            "video_folder %s: skipped %d of %d list lines %s; list in %s",
            self.split,
            len(rows),
            self.total,
            dict(reasons),
            self.shown_path,
        )


def _python_generator(entries, process, report):
    skipped = []
    for entry in entries:
        try:
            yield process(entry)
        except video_io.SkipVideo as e:
            logging.warning("Skipping %s: %s", entry.video_id, e)
            skipped.append((entry.video_id, entry.path, str(e)))
    report.write(skipped, examples=len(entries) - len(skipped))


def _beam_transform(entries, process, report):
    beam = tfds.core.lazy_imports.apache_beam

    class _Process(beam.DoFn):
        def process(self, entry):
            try:
                yield process(entry)
            except video_io.SkipVideo as e:
                yield beam.pvalue.TaggedOutput("skipped", (entry.video_id, entry.path, str(e)))

    class _Generate(beam.PTransform):
        def expand(self, pipeline):
            results = (
                pipeline
                | "Create" >> beam.Create(entries)
                | "Process" >> beam.ParDo(_Process()).with_outputs("skipped", main="examples")
            )
            _ = (
                results.skipped
                | "Collect" >> beam.combiners.ToList()
                | "Report" >> beam.Map(report.write)
            )
            return results.examples

    return _Generate()
