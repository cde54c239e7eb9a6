"""Look at one record before training on it: schema, shapes, labels, and a PNG contact sheet.

python -m nsnet_jax.input_pipeline.inspect --dataset=salient_fashion/small --split=test
    [--data_dir=DIR] [--index=0] [--out=record.png]
Evidence frames (where the dataset knows them) get a red border on the sheet.
"""

from __future__ import annotations

import io
import json
import sys

import numpy as np
from absl import flags
from PIL import Image, ImageDraw

from nsnet_jax.flag_parsing import run_tool
from nsnet_jax.input_pipeline import decode, pipeline, records


def contact_sheet(frames: np.ndarray, evidence: np.ndarray | None, per_row: int = 8) -> Image.Image:
    """Frames [T,H,W,3] in rows of `per_row`, a red border around evidence frames."""
    t, h, w, _ = frames.shape
    pad = max(2, h // 32)
    cols = min(per_row, t)
    rows = -(-t // cols)
    sheet = Image.new("RGB", (cols * (w + 2 * pad), rows * (h + 2 * pad)), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for i in range(t):
        x, y = (i % cols) * (w + 2 * pad), (i // cols) * (h + 2 * pad)
        if evidence is not None and evidence[i]:
            draw.rectangle([x, y, x + w + 2 * pad - 1, y + h + 2 * pad - 1], fill=(220, 0, 0))
        sheet.paste(Image.fromarray(frames[i]), (x + pad, y + pad))
    return sheet


def inspect_record(
    dataset: str, split: str, data_dir: str | None, index: int, out: str | None
) -> dict:
    """Returns (and the CLI prints) a summary of record `index`; writes the sheet to `out`."""
    import tensorflow_datasets as tfds

    builder = pipeline.load_builder(dataset, data_dir)
    fields = pipeline.dataset_meta_fields(builder)
    source = tfds.data_source(
        dataset, split=split, data_dir=data_dir, decoders={"video": pipeline._PassThrough()}
    )
    record = records.read_record(source, index)
    video_id = record["video_id"]
    video_id = video_id.decode() if isinstance(video_id, bytes) else str(video_id)
    encoded = list(record["video"])
    try:
        frames = np.stack([np.asarray(Image.open(io.BytesIO(e)).convert("RGB")) for e in encoded])
    except Exception as e:  # noqa: BLE001
        raise decode.CorruptFrameError(f"Example {video_id!r}: undecodable frame ({e})") from e
    evidence = record.get("evidence")
    names = fields["class_names"]
    labels = [int(x) for x in record.get("labels", [record["label"]])]
    summary = {
        "dataset": dataset,
        "split": split,
        "num_examples": len(source),
        "schema": str(builder.info.features),
        "index": index,
        "video_id": video_id,
        "frames_shape": list(frames.shape),
        "jpeg_bytes_per_frame": int(np.mean([len(e) for e in encoded])),
        "label": int(record["label"]),
        "label_name": names[int(record["label"])],
        "labels": [names[i] for i in labels],
        "evidence": None if evidence is None else [int(i) for i in np.flatnonzero(evidence)],
        **{k: v for k, v in fields.items() if k != "class_names"},
    }
    if out:
        contact_sheet(frames, None if evidence is None else np.asarray(evidence)).save(out)
        summary["png"] = out
    return summary


def define_flags(fv: flags.FlagValues) -> None:
    """This command's flags (names and defaults as documented above)."""
    flags.DEFINE_string("dataset", None, "TFDS name, e.g. salient_fashion/small", flag_values=fv)
    flags.mark_flag_as_required("dataset", flag_values=fv)
    flags.DEFINE_string("split", "train", "split to read", flag_values=fv)
    flags.DEFINE_string("data_dir", None, "TFDS data_dir", flag_values=fv)
    flags.DEFINE_integer("index", 0, "the record to show", flag_values=fv)
    flags.DEFINE_string("out", None, "PNG path for the contact sheet", flag_values=fv)


def main(argv: list[str] | None = None) -> int:
    return run_tool(_main, define_flags, argv, doc=__doc__)


def _main(args: flags.FlagValues, _: list[str]) -> int:
    try:
        summary = inspect_record(args.dataset, args.split, args.data_dir, args.index, args.out)
    except (IndexError, records.CorruptRecordError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    schema = summary.pop("schema")
    print(schema)
    for key, value in summary.items():
        print(f"{key}: {json.dumps(value)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
