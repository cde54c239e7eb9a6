"""NSNet inference in plain PyTorch, the path a user would otherwise take, for the speed comparison.

Hand-written ResNet and MobileNetV2 with torchvision's module names (torchvision does not import
beside the CPU torch wheel), the sampler's heads and the same score fusion, top-k and mean-logit
recognizer as `nsnet_jax.models`. `load_jax_variables` copies a Flax variables tree into the torch
modules through the converter's own name mapping, so both frameworks can run the same weights and
be checked to pick the same frames.

torch is an optional extra (`pip install torch`): importing this module without it raises
ImportError, which `nsnet_jax.bench --torch` reports as a JSON line instead of crashing.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from nsnet_jax.models.layers import make_divisible
from nsnet_jax.models.mobilenet_v2 import INVERTED_RESIDUAL_SETTING
from nsnet_jax.models.registry import BACKBONES
from nsnet_jax.models.resnet import RESNET_STAGES
from nsnet_jax.pretrained.converters import flatten, source_keys

# --------------------------------------------------------------------------------------- ResNet


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int, downsample: nn.Module | None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.relu(self.bn3(self.conv3(out)) + identity)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int, downsample: nn.Module | None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + identity)


class ResNet(nn.Module):
    """torchvision.models.ResNet with `int(64 * width)` base channels; no fc when headless."""

    def __init__(self, depth: int, width: float, num_classes: int | None) -> None:
        super().__init__()
        stages, bottleneck = RESNET_STAGES[depth]
        block = Bottleneck if bottleneck else BasicBlock
        base = int(64 * width)
        self.inplanes = base
        self.conv1 = nn.Conv2d(3, base, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(base)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.layers = []
        for i, blocks in enumerate(stages):
            layer = self._make_layer(block, base * 2**i, blocks, 1 if i == 0 else 2)
            setattr(self, f"layer{i + 1}", layer)
            self.layers.append(layer)
        self.feature_dim = base * 8 * block.expansion
        self.fc = None if num_classes is None else nn.Linear(self.feature_dim, num_classes)

    def _make_layer(self, block: type, planes: int, blocks: int, stride: int) -> nn.Sequential:
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

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for layer in self.layers:
            x = layer(x)
        x = x.mean(dim=(2, 3))
        return x if self.fc is None else self.fc(x)


# ---------------------------------------------------------------------------------- MobileNetV2


class ConvBNReLU(nn.Sequential):
    def __init__(self, inp: int, out: int, kernel: int = 3, stride: int = 1, groups: int = 1):
        super().__init__(
            nn.Conv2d(inp, out, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
            nn.BatchNorm2d(out),
            nn.ReLU6(inplace=True),
        )


class InvertedResidual(nn.Module):
    def __init__(self, inp: int, oup: int, stride: int, expand_ratio: int) -> None:
        super().__init__()
        hidden = inp * expand_ratio
        self.use_res_connect = stride == 1 and inp == oup
        layers: list[nn.Module] = [ConvBNReLU(inp, hidden, 1)] if expand_ratio != 1 else []
        layers += [
            ConvBNReLU(hidden, hidden, stride=stride, groups=hidden),
            nn.Conv2d(hidden, oup, 1, 1, 0, bias=False),
            nn.BatchNorm2d(oup),
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


class MobileNetV2(nn.Module):
    """torchvision.models.MobileNetV2 (`features.N`, `classifier.1`); headless without classes."""

    def __init__(self, width: float, num_classes: int | None) -> None:
        super().__init__()
        inp = make_divisible(32 * width)
        self.feature_dim = make_divisible(1280 * max(1.0, width))
        features: list[nn.Module] = [ConvBNReLU(3, inp, stride=2)]
        for t, c, n, s in INVERTED_RESIDUAL_SETTING:
            out = make_divisible(c * width)
            for i in range(n):
                features.append(InvertedResidual(inp, out, s if i == 0 else 1, t))
                inp = out
        features.append(ConvBNReLU(inp, self.feature_dim, kernel=1))
        self.features = nn.Sequential(*features)
        self.classifier = (
            None
            if num_classes is None
            else nn.Sequential(nn.Dropout(0.0), nn.Linear(self.feature_dim, num_classes))
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x).mean(dim=(2, 3))
        return x if self.classifier is None else self.classifier(x)


def create_backbone(name: str, width: float, num_classes: int | None) -> nn.Module:
    """The torch twin of `nsnet_jax.models.create_backbone` for the backbones the bench uses."""
    if name.startswith("resnet") and int(name[6:]) in RESNET_STAGES:
        return ResNet(int(name[6:]), width, num_classes)
    if name == "mobilenet_v2":
        return MobileNetV2(width, num_classes)
    raise NotImplementedError(f"no PyTorch reference for backbone {name!r}")


# ---------------------------------------------------------------------------------------- NSNet


class Normalize(nn.Module):
    """uint8 NHWC frames -> normalised float NCHW, as `registry.normalize_images` does."""

    def __init__(self, backbone: str, channels_last: bool) -> None:
        super().__init__()
        mean, std = BACKBONES[backbone].mean_std
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        x = frames.permute(0, 3, 1, 2).float()
        return ((x - self.mean) / self.std).contiguous(memory_format=self.memory_format)


class Sampler(nn.Module):
    """NSNetSampler at inference: backbone on all T frames, frame and attention heads, fusion."""

    def __init__(self, backbone: str, width: float, video_classes: int, fusion: str, beta: float,
                 channels_last: bool) -> None:  # fmt: skip
        super().__init__()
        if fusion not in ("sum", "product"):
            raise NotImplementedError(f"torch reference supports fusion sum|product, not {fusion}")
        self.normalize = Normalize(backbone, channels_last)
        self.backbone = create_backbone(backbone, width, None)
        dim = self.backbone.feature_dim
        self.frame_head = nn.Linear(dim, 1)
        self.attention_head = nn.Linear(dim, 1)
        self.video_head = nn.Linear(dim, video_classes)  # unused at inference; kept for weights
        self.fusion, self.beta = fusion, beta

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        b, t = frames.shape[:2]
        h = self.backbone(self.normalize(frames.flatten(0, 1))).view(b, t, -1)
        s_f = torch.sigmoid(self.frame_head(h)[..., 0])
        a = torch.sigmoid(self.attention_head(h)[..., 0])
        return s_f + self.beta * a if self.fusion == "sum" else s_f * a


class Recognizer(nn.Module):
    """Per-frame backbone with a classifier, TSN average of the frame logits."""

    def __init__(self, backbone: str, width: float, num_classes: int, channels_last: bool):
        super().__init__()
        self.normalize = Normalize(backbone, channels_last)
        self.backbone = create_backbone(backbone, width, num_classes)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        b, k = frames.shape[:2]
        return self.backbone(self.normalize(frames.flatten(0, 1))).view(b, k, -1).mean(1)


def gather_frames(frames: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    """frames [B, T, ...], indices [B, K] -> [B, K, ...]."""
    return frames[torch.arange(frames.shape[0], device=frames.device)[:, None], indices]


class NSNet(nn.Module):
    """sampler on T low-res frames -> top-K in temporal order -> recognizer on those K frames."""

    def __init__(self, sampler: Sampler, recognizer: Recognizer, num_select: int) -> None:
        super().__init__()
        self.sampler, self.recognizer, self.num_select = sampler, recognizer, num_select

    def forward(
        self, sampler_frames: torch.Tensor, frames: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        scores = self.sampler(sampler_frames)
        # torch.topk on CPU does not promise the lowest index among ties; a stable descending
        # sort does, matching `jax.lax.top_k`.
        order = torch.sort(scores, dim=1, descending=True, stable=True).indices
        indices = order[:, : self.num_select]
        indices = torch.sort(indices, dim=1).values
        return self.recognizer(gather_frames(frames, indices)), indices, scores


def build_torch_nsnet(config: Any, channels_last: bool = False) -> NSNet:
    """The torch NSNet a config describes, random weights, eval mode; unsupported options raise."""
    from nsnet_jax.models.nsnet import video_classes

    m = config.model
    if m.sampler.temporal != "none":
        raise NotImplementedError("torch reference: only model.sampler.temporal='none'")
    if m.recognizer.aggregation != "mean_logits":
        raise NotImplementedError("torch reference: only model.recognizer.aggregation=mean_logits")
    sampler = Sampler(m.sampler.backbone, m.sampler.width, video_classes(config),
                      m.sampler.fusion, m.sampler.fusion_beta, channels_last)  # fmt: skip
    recognizer = Recognizer(
        m.recognizer.backbone, m.recognizer.width, config.data.num_classes, channels_last
    )
    model = NSNet(sampler, recognizer, m.num_select).eval()
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model


# ------------------------------------------------------------------------------- weight transfer


def _to_torch_layout(value: np.ndarray, key: str) -> np.ndarray:
    """The inverse of the converter's transforms: HWIO -> OIHW, (in, out) -> (out, in)."""
    if key.endswith(".weight") and value.ndim == 4:
        return np.transpose(value, (3, 2, 0, 1))
    if key.endswith(".weight") and value.ndim == 2:
        return value.T
    return value


def _backbone_state(variables: Any, part: str, backbone: str) -> dict[str, np.ndarray]:
    target = {
        coll: variables[coll][part]["backbone"]
        for coll in ("params", "batch_stats")
        if part in variables.get(coll, {})
    }
    flat = {"/".join(k): np.asarray(v) for k, v in flatten(target).items()}
    out = {}
    for path, key in source_keys(backbone, target).items():
        if key == "<no rule>":
            raise ValueError(f"no torch name for JAX parameter {part}/{path}")
        out[f"backbone.{key}"] = _to_torch_layout(flat[path], key)
    return out


def load_jax_variables(model: NSNet, variables: Any, config: Any) -> None:
    """Copies NSNet's Flax variables into `model` (strict: every torch tensor must be covered)."""
    m = config.model
    params = variables["params"]
    sampler_sd = _backbone_state(variables, "sampler", m.sampler.backbone)
    for head in ("frame_head", "attention_head", "video_head"):
        sampler_sd[f"{head}.weight"] = np.asarray(params["sampler"][head]["kernel"]).T
        sampler_sd[f"{head}.bias"] = np.asarray(params["sampler"][head]["bias"])
    recognizer_sd = _backbone_state(variables, "recognizer", m.recognizer.backbone)
    for module, sd in ((model.sampler, sampler_sd), (model.recognizer, recognizer_sd)):
        state = {k: torch.tensor(np.array(v, np.float32)) for k, v in sd.items()}
        missing, unexpected = module.load_state_dict(state, strict=False)
        missing = [k for k in missing if not k.endswith("num_batches_tracked")]
        if missing or unexpected:
            raise ValueError(f"weight transfer: missing {missing}, unexpected {unexpected}")
