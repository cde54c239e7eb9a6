"""video_folder: a user's own videos (files or AR-Net frame folders) as T JPEG frames per video.

`tfds build input_pipeline/datasets/video_folder --config=NAME --manual_dir=DIR --data_dir=OUT`.
Bad videos are skipped with a reason, counted, logged, and listed in
`OUT/video_folder/NAME/VERSION/skip_report-<split>.tsv`; the build never aborts on one video.
Configs with `beam=True` build through Apache Beam (DirectRunner here, Dataflow/Spark/Flink on a
cluster: see the README).
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import os
import pathlib
import sys

import numpy as np
import tensorflow_datasets as tfds
from etils import epath

try:
    from input_pipeline import video_io
except ModuleNotFoundError:  # `tfds build <folder>` loads this file by path, outside the package
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[3]))
    from input_pipeline import video_io

LAYOUT = """\
Expected manual_dir layout:
  MANUAL_DIR/classes.txt        one class name per line; line i is label i
  MANUAL_DIR/<split>.txt        one video per line, paths relative to MANUAL_DIR (or absolute):
      <video file> <label> [<label> ...]                  (mp4/avi/webm/mkv/mov, decoded with PyAV)
      <frame folder> <num_frames> <label> [<label> ...]   (AR-Net/OCSampler layout)
    labels are 0-based ints into classes.txt, or class names
  or, without <split>.txt: MANUAL_DIR/<split>/<class name>/<video file> (classes.txt optional)
"""


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


class Builder(tfds.core.GeneratorBasedBuilder):
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

    def __init__(self, **kwargs):
        kwargs.setdefault("file_format", "array_record")
        super().__init__(**kwargs)

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
        classes, entries = read_manual_dir(root, self.builder_config.splits)
        self.info.features["label"].names = classes
        self.info.features["labels"].feature.names = classes
        return {
            split: self._generate_examples(split, entries[split], classes)
            for split in self.builder_config.splits
        }

    def _generate_examples(self, split: str, entries: list, classes: list[str]):
        cfg = self.builder_config
        report = os.path.join(os.fspath(self.data_dir), f"skip_report-{split}.tsv")
        process = _Processor(cfg, classes)
        if cfg.beam:
            return _beam_transform(split, entries, process, report)
        return _python_generator(split, entries, process, report)


def read_manual_dir(root: str, splits: tuple[str, ...]) -> tuple[list[str], dict[str, list]]:
    """Class names and the entries of each split; errors name the path and the layout."""
    if not os.path.isdir(root):
        raise FileNotFoundError(f"manual_dir {root!r} does not exist.\n{LAYOUT}")
    classes_file = os.path.join(root, "classes.txt")
    classes = None
    if os.path.isfile(classes_file):
        with open(classes_file) as f:
            classes = [line.strip() for line in f if line.strip()]
    entries: dict[str, list] = {}
    for split in splits:
        list_file = os.path.join(root, f"{split}.txt")
        split_dir = os.path.join(root, split)
        if os.path.isfile(list_file):
            entries[split] = _read_list_file(root, list_file)
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
    return classes, entries


def _read_list_file(root: str, list_file: str) -> list:
    out = []
    with open(list_file) as f:
        for line in f:
            tokens = line.split()
            if not tokens:
                continue
            path = tokens[0] if os.path.isabs(tokens[0]) else os.path.join(root, tokens[0])
            hint, labels = 0, tokens[1:]
            is_folder = os.path.isdir(path) or not tokens[0].lower().endswith(
                video_io.VIDEO_EXTENSIONS
            )
            if is_folder and len(tokens) >= 3 and tokens[1].isdigit():
                hint, labels = int(tokens[1]), tokens[2:]
            video_id = f"{os.path.relpath(path, root)}"
            out.append(video_io.Entry(video_id, path, tuple(labels), hint))
    return out


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

    def __init__(self, cfg: VideoFolderConfig, classes: list[str]):
        self.cfg = cfg
        self.classes = list(classes)
        self.index = {name: i for i, name in enumerate(classes)}

    def _label(self, token: str) -> int:
        if token.lstrip("-").isdigit():
            i = int(token)
            if 0 <= i < len(self.classes):
                return i
        elif token in self.index:
            return self.index[token]
        raise video_io.SkipVideo(f"label {token!r} is not in the class list")

    def __call__(self, entry) -> tuple[str, dict]:
        cfg = self.cfg
        if not entry.labels:
            raise video_io.SkipVideo("no label")
        labels = [self._label(t) for t in entry.labels]
        if not cfg.multi_label and len(labels) > 1:
            labels = labels[:1]
        kw = dict(short_side=cfg.short_side, quality=cfg.jpeg_quality)
        if os.path.isdir(entry.path):
            step = cfg.frame_folder_fps / cfg.fps if cfg.fps > 0 and cfg.frame_folder_fps else 0.0
            frames = video_io.read_frame_folder(entry.path, cfg.num_frames, fps_step=step, **kw)
        else:
            frames = video_io.read_video_file(entry.path, cfg.num_frames, fps=cfg.fps, **kw)
        example = {
            "video": frames,
            "label": labels[0],
            "labels": labels,
            "video_id": entry.video_id,
            "evidence": np.zeros(cfg.num_frames, bool),
        }
        return entry.video_id, example


def _write_report(path: str, split: str, skipped: list, total: int) -> None:
    reasons = collections.Counter(r.split(":")[0] for _, _, r in skipped)
    lines = ["video_id\tpath\treason"] + [f"{v}\t{p}\t{r}" for v, p, r in sorted(skipped)]
    epath.Path(path).write_text("\n".join(lines) + "\n")
    logging.warning(
        "video_folder %s: skipped %d of %d videos %s; list in %s",
        split,
        len(skipped),
        total,
        dict(reasons),
        path,
    )


def _python_generator(split, entries, process, report):
    skipped = []
    for entry in entries:
        try:
            yield process(entry)
        except video_io.SkipVideo as e:
            logging.warning("Skipping %s: %s", entry.video_id, e)
            skipped.append((entry.video_id, entry.path, str(e)))
    _write_report(report, split, skipped, len(entries))


def _beam_transform(split, entries, process, report):
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
                | "Report" >> beam.Map(lambda s: _write_report(report, split, s, len(entries)))
            )
            return results.examples

    return _Generate()
