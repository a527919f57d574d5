"""Small, faithful versions of the architectures users deploy on edge devices, in plain ``torch.nn``.

Each factory keeps the defining structure of its paper (block type, activation, skip connections,
stage layout) and scales only widths (and, where it matters, the stem for small inputs) so the model
trains in seconds on two CPU cores. No torchvision or timm: they force the CUDA torch build here.

=======================  ===========================  ==========================================================
name                     input (N, C, H, W)           faithful / scaled down
=======================  ===========================  ==========================================================
``mobilenet_v2``         (N, 3, 96, 96)               inverted residuals, linear bottlenecks, ReLU6, the paper's
                                                      (t, c, n, s) table and a 1280-wide head; width 0.35
``mobilenet_v3_small``   (N, 3, 96, 96)               the paper's 11 bneck rows, SE (hard-sigmoid gate), hard-swish,
                                                      576 -> 1024 head; width 0.5
``efficientnet_lite0``   (N, 3, 96, 96)               EfficientNet-B0 MBConv table without SE, ReLU6, fixed
                                                      32-wide stem and 1280-wide head (the "lite" rules); width 0.5
``resnet18``             (N, 3, 32, 32)               BasicBlocks [2, 2, 2, 2] with 1x1 projection shortcuts;
                                                      CIFAR stem (3x3, stride 1, no max-pool) below 64 px; width 0.25
``squeezenet``           (N, 3, 96, 96)               SqueezeNet 1.1: fire modules (squeeze 1x1, expand 1x1 + 3x3,
                                                      concatenated), a conv classifier; width 0.5
``shufflenet_v2``        (N, 3, 96, 96)               channel split, channel shuffle, the paper's stage widths for
                                                      0.5x / 1.0x / 1.5x / 2.0x and repeats [4, 8, 4]
``lstm_kws``             (N, 1, 49, 10) MFCC          one LSTM layer over the frames, last hidden state classified
=======================  ===========================  ==========================================================

Every model returns logits (N, num_classes). ``input_size`` fixes no weight (pooling is global) except ResNet-18's
stem, which it picks; it is checked and kept on the model so a recipe states the resolution it was designed for.
"""

from __future__ import annotations

import torch
from torch import nn

from edgekit.models.resnet import BasicBlock


def make_divisible(v: float, divisor: int = 8) -> int:
    """Round a channel count to a multiple of ``divisor``, never below 90 % of ``v`` (TF reference rule)."""
    new = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new + divisor if new < 0.9 * v else new


def _check(width: float, input_size: int, stride: int) -> None:
    if not 0 < width <= 4:
        raise ValueError(f"width {width} must be in (0, 4]")
    if input_size < stride or input_size % stride:
        raise ValueError(f"input_size {input_size} must be a positive multiple of {stride} (the total stride)")


def _conv_bn(
    cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1, act: type[nn.Module] | None = nn.ReLU6
) -> nn.Sequential:
    layers: list[nn.Module] = [
        nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
    ]
    if act is not None:
        layers.append(act())
    return nn.Sequential(*layers)


class _Classifier(nn.Module):
    """Global average pool, dropout, one Linear."""

    def __init__(self, cin: int, num_classes: int, dropout: float = 0.2):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.dropout(torch.flatten(self.pool(x), 1)))


# --- MobileNetV2 (Sandler et al., 2018) ---------------------------------------------------------------------------

# (expansion t, output channels c at width 1.0, repeats n, first stride s): Table 2 of the paper.
MOBILENET_V2 = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


class InvertedResidual(nn.Module):
    """1x1 expansion (ReLU6), 3x3 depthwise (ReLU6), 1x1 linear projection; identity skip at stride 1, cin == cout."""

    def __init__(self, cin: int, cout: int, stride: int, expand: int):
        super().__init__()
        hidden = cin * expand
        layers: list[nn.Module] = [] if expand == 1 else [_conv_bn(cin, hidden, 1)]
        layers += [_conv_bn(hidden, hidden, 3, stride, groups=hidden), _conv_bn(hidden, cout, 1, act=None)]
        self.block = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x) if self.residual else self.block(x)


class MobileNetV2(nn.Module):
    def __init__(self, num_classes: int, in_channels: int, width: float, input_size: int):
        super().__init__()
        self.input_size = input_size
        c = make_divisible(32 * width)
        layers: list[nn.Module] = [_conv_bn(in_channels, c, 3, 2)]
        for t, ch, n, s in MOBILENET_V2:
            out = make_divisible(ch * width)
            for i in range(n):
                layers.append(InvertedResidual(c, out, s if i == 0 else 1, t))
                c = out
        head = make_divisible(1280 * max(1.0, width))  # the paper keeps 1280 below width 1.0
        layers.append(_conv_bn(c, head, 1))
        self.features = nn.Sequential(*layers)
        self.classifier = _Classifier(head, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def mobilenet_v2(num_classes: int = 10, in_channels: int = 3, width: float = 0.35, input_size: int = 96) -> nn.Module:
    """MobileNetV2 at width ``width`` (0.35: ~0.4 M parameters, ~12 M MACs at 96x96); the paper's blocks and head.

    Scaled down: the width multiplier only. At 96x96 the last feature map is 3x3 (total stride 32).
    """
    _check(width, input_size, 32)
    return MobileNetV2(num_classes, in_channels, width, input_size)


# --- MobileNetV3-Small (Howard et al., 2019) ----------------------------------------------------------------------

# (kernel, expanded channels, output channels, squeeze-excite, hard-swish, stride): Table 2 of the paper.
MOBILENET_V3_SMALL = (
    (3, 16, 16, True, False, 2),
    (3, 72, 24, False, False, 2),
    (3, 88, 24, False, False, 1),
    (5, 96, 40, True, True, 2),
    (5, 240, 40, True, True, 1),
    (5, 240, 40, True, True, 1),
    (5, 120, 48, True, True, 1),
    (5, 144, 48, True, True, 1),
    (5, 288, 96, True, True, 2),
    (5, 576, 96, True, True, 1),
    (5, 576, 96, True, True, 1),
)


class SqueezeExcite(nn.Module):
    """Global pool, 1x1 reduce (ReLU), 1x1 expand, hard-sigmoid gate multiplying the input channels."""

    def __init__(self, channels: int, reduce: int = 4):
        super().__init__()
        squeeze = make_divisible(channels / reduce)
        self.reduce = nn.Conv2d(channels, squeeze, 1)
        self.expand = nn.Conv2d(squeeze, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = torch.relu(self.reduce(x.mean((2, 3), keepdim=True)))
        return x * nn.functional.hardsigmoid(self.expand(s))


class Bneck(nn.Module):
    """MobileNetV3 bottleneck: expansion, depthwise k x k, optional SE, linear projection, identity skip."""

    def __init__(self, cin: int, exp: int, cout: int, kernel: int, se: bool, hswish: bool, stride: int):
        super().__init__()
        act = nn.Hardswish if hswish else nn.ReLU
        layers: list[nn.Module] = [] if exp == cin else [_conv_bn(cin, exp, 1, act=act)]
        layers.append(_conv_bn(exp, exp, kernel, stride, groups=exp, act=act))
        if se:
            layers.append(SqueezeExcite(exp))
        layers.append(_conv_bn(exp, cout, 1, act=None))
        self.block = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x) if self.residual else self.block(x)


class MobileNetV3Small(nn.Module):
    def __init__(self, num_classes: int, in_channels: int, width: float, input_size: int):
        super().__init__()
        self.input_size = input_size
        c = make_divisible(16 * width)
        layers: list[nn.Module] = [_conv_bn(in_channels, c, 3, 2, act=nn.Hardswish)]
        for k, exp, out, se, hs, s in MOBILENET_V3_SMALL:
            e, o = make_divisible(exp * width), make_divisible(out * width)
            layers.append(Bneck(c, e, o, k, se, hs, s))
            c = o
        last = make_divisible(576 * width)
        layers.append(_conv_bn(c, last, 1, act=nn.Hardswish))
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        hidden = make_divisible(1024 * width)
        self.head = nn.Sequential(
            nn.Linear(last, hidden), nn.Hardswish(), nn.Dropout(0.2), nn.Linear(hidden, num_classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.flatten(self.pool(self.features(x)), 1))


def mobilenet_v3_small(
    num_classes: int = 10, in_channels: int = 3, width: float = 0.5, input_size: int = 96
) -> nn.Module:
    """MobileNetV3-Small: SE blocks with a hard-sigmoid gate, hard-swish in the later stages, the paper's table.

    Scaled down: the width multiplier (applied to every layer, the 1024-wide head included).
    """
    _check(width, input_size, 32)
    return MobileNetV3Small(num_classes, in_channels, width, input_size)


# --- EfficientNet-Lite0 (Tan & Le, 2019; the TF "lite" variants) ------------------------------------------------

# (expansion, kernel, first stride, output channels at width 1.0, repeats): EfficientNet-B0's MBConv table.
EFFICIENTNET_B0 = (
    (1, 3, 1, 16, 1),
    (6, 3, 2, 24, 2),
    (6, 5, 2, 40, 2),
    (6, 3, 2, 80, 3),
    (6, 5, 1, 112, 3),
    (6, 5, 2, 192, 4),
    (6, 3, 1, 320, 1),
)


class MBConv(nn.Module):
    """EfficientNet-lite MBConv: 1x1 expansion, depthwise k x k, 1x1 projection, all ReLU6, no squeeze-excite."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expand: int):
        super().__init__()
        hidden = cin * expand
        layers: list[nn.Module] = [] if expand == 1 else [_conv_bn(cin, hidden, 1)]
        layers += [_conv_bn(hidden, hidden, kernel, stride, groups=hidden), _conv_bn(hidden, cout, 1, act=None)]
        self.block = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x) if self.residual else self.block(x)


class EfficientNetLite(nn.Module):
    def __init__(self, num_classes: int, in_channels: int, width: float, input_size: int):
        super().__init__()
        self.input_size = input_size
        # Lite rule: the stem and head keep their width whatever the multiplier (they are cheap and quantize well).
        c = 32
        layers: list[nn.Module] = [_conv_bn(in_channels, c, 3, 2)]
        for e, k, s, ch, n in EFFICIENTNET_B0:
            out = make_divisible(ch * width)
            for i in range(n):
                layers.append(MBConv(c, out, k, s if i == 0 else 1, e))
                c = out
        layers.append(_conv_bn(c, 1280, 1))
        self.features = nn.Sequential(*layers)
        self.classifier = _Classifier(1280, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def efficientnet_lite0(
    num_classes: int = 10, in_channels: int = 3, width: float = 0.5, input_size: int = 96
) -> nn.Module:
    """EfficientNet-Lite0: B0's 16 MBConv blocks without SE, ReLU6 instead of swish, fixed stem and head.

    Scaled down: block widths by ``width`` (Lite0 itself is 1.0 at 224x224); depth is Lite0's.
    """
    _check(width, input_size, 32)
    return EfficientNetLite(num_classes, in_channels, width, input_size)


# --- ResNet-18 (He et al., 2016) ----------------------------------------------------------------------------------


class ResNet18(nn.Module):
    def __init__(self, num_classes: int, in_channels: int, width: float, input_size: int):
        super().__init__()
        self.input_size = input_size
        widths = [max(8, int(w * width)) for w in (64, 128, 256, 512)]
        if input_size < 64:  # CIFAR stem (He et al. section 4.2): keep the resolution of small images
            self.stem = _conv_bn(in_channels, widths[0], 3, 1, act=nn.ReLU)
        else:
            self.stem = nn.Sequential(_conv_bn(in_channels, widths[0], 7, 2, act=nn.ReLU), nn.MaxPool2d(3, 2, 1))
        stages, c = [], widths[0]
        for i, w in enumerate(widths):
            stages.append(nn.Sequential(BasicBlock(c, w, 1 if i == 0 else 2), BasicBlock(w, w, 1)))
            c = w
        self.layers = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.layers(self.stem(x))), 1))


def resnet18(num_classes: int = 10, in_channels: int = 3, width: float = 0.25, input_size: int = 32) -> nn.Module:
    """ResNet-18: BasicBlocks [2, 2, 2, 2] over four stages, projection shortcuts where the shape changes.

    Scaled down: stage widths 64..512 times ``width`` (0.25: 16..128, 0.7 M parameters, ~35 M MACs at 32x32).
    Below 64 px the stem is the CIFAR one (3x3 stride 1, no max-pool); from 64 px on, ImageNet's 7x7/2 + max-pool.
    """
    _check(width, input_size, 8)
    return ResNet18(num_classes, in_channels, width, input_size)


# --- SqueezeNet 1.1 (Iandola et al., 2016) -----------------------------------------------------------------------


class Fire(nn.Module):
    """Squeeze 1x1 (ReLU), then expand 1x1 and 3x3 (ReLU) in parallel, concatenated on channels."""

    def __init__(self, cin: int, squeeze: int, expand: int):
        super().__init__()
        self.squeeze = nn.Conv2d(cin, squeeze, 1)
        self.expand1 = nn.Conv2d(squeeze, expand, 1)
        self.expand3 = nn.Conv2d(squeeze, expand, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = torch.relu(self.squeeze(x))
        return torch.cat([torch.relu(self.expand1(s)), torch.relu(self.expand3(s))], 1)


class SqueezeNet(nn.Module):
    def __init__(self, num_classes: int, in_channels: int, width: float, input_size: int):
        super().__init__()
        self.input_size = input_size

        def w(c: int) -> int:
            return make_divisible(c * width)

        def fire(cin: int, s: int, e: int) -> Fire:
            return Fire(w(cin), w(s), w(e))

        self.features = nn.Sequential(
            nn.Conv2d(in_channels, w(64), 3, 2, 1),
            nn.ReLU(),
            nn.MaxPool2d(3, 2, ceil_mode=True),
            fire(64, 16, 64),
            fire(128, 16, 64),
            nn.MaxPool2d(3, 2, ceil_mode=True),
            fire(128, 32, 128),
            fire(256, 32, 128),
            nn.MaxPool2d(3, 2, ceil_mode=True),
            fire(256, 48, 192),
            fire(384, 48, 192),
            fire(384, 64, 256),
            fire(512, 64, 256),
        )
        # SqueezeNet classifies with a 1x1 conv to the classes, ReLU, global average pool (no Linear layer).
        self.classifier = nn.Sequential(
            nn.Dropout(0.5), nn.Conv2d(w(512), num_classes, 1), nn.ReLU(), nn.AdaptiveAvgPool2d(1)
        )
        # The reference initialization: without BatchNorm, PyTorch's default init lets the final ReLU go dead
        # (all-zero logits) within an epoch; a small normal init of the class conv keeps it alive.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                if m is self.classifier[1]:
                    nn.init.normal_(m.weight, 0.0, 0.01)
                else:
                    nn.init.kaiming_uniform_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.classifier(self.features(x)), 1)


def squeezenet(num_classes: int = 10, in_channels: int = 3, width: float = 0.5, input_size: int = 96) -> nn.Module:
    """SqueezeNet 1.1: eight fire modules, three max-pools, a 1x1 conv classifier; widths times ``width``."""
    _check(width, input_size, 16)
    return SqueezeNet(num_classes, in_channels, width, input_size)


# --- ShuffleNetV2 (Ma et al., 2018) ------------------------------------------------------------------------------

# Stage output channels (stage 2, 3, 4) and the final 1x1 conv per width: Table 5 of the paper.
SHUFFLENET_V2 = {
    0.5: (48, 96, 192, 1024),
    1.0: (116, 232, 464, 1024),
    1.5: (176, 352, 704, 1024),
    2.0: (244, 488, 976, 2048),
}


def channel_shuffle(x: torch.Tensor, groups: int = 2) -> torch.Tensor:
    n, c, h, w = x.shape
    return x.reshape(n, groups, c // groups, h, w).transpose(1, 2).reshape(n, c, h, w)


class ShuffleUnit(nn.Module):
    """Stride 1: split channels in half, transform one half (1x1, 3x3 depthwise, 1x1), concat, shuffle.
    Stride 2: both halves see the whole input (a depthwise + 1x1 branch and the 1x1-dw-1x1 branch), doubling width."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.stride = stride
        half = cout // 2
        branch_in = cin if stride == 2 else cin // 2
        self.branch2 = nn.Sequential(
            _conv_bn(branch_in, half, 1, act=nn.ReLU),
            _conv_bn(half, half, 3, stride, groups=half, act=None),
            _conv_bn(half, half, 1, act=nn.ReLU),
        )
        self.branch1 = None
        if stride == 2:
            self.branch1 = nn.Sequential(
                _conv_bn(cin, cin, 3, 2, groups=cin, act=None), _conv_bn(cin, half, 1, act=nn.ReLU)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.branch1 is None:
            a, b = x.chunk(2, dim=1)
            out = torch.cat([a, self.branch2(b)], 1)
        else:
            out = torch.cat([self.branch1(x), self.branch2(x)], 1)
        return channel_shuffle(out)


class ShuffleNetV2(nn.Module):
    def __init__(self, num_classes: int, in_channels: int, width: float, input_size: int):
        super().__init__()
        self.input_size = input_size
        *stages, last = SHUFFLENET_V2[width]
        self.stem = nn.Sequential(_conv_bn(in_channels, 24, 3, 2, act=nn.ReLU), nn.MaxPool2d(3, 2, 1))
        blocks, c = [], 24
        for out, repeats in zip(stages, (4, 8, 4), strict=True):
            blocks += [ShuffleUnit(c, out, 2)] + [ShuffleUnit(out, out, 1) for _ in range(repeats - 1)]
            c = out
        self.stages = nn.Sequential(*blocks)
        self.conv5 = _conv_bn(c, last, 1, act=nn.ReLU)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(last, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.conv5(self.stages(self.stem(x)))), 1))


def shufflenet_v2(num_classes: int = 10, in_channels: int = 3, width: float = 0.5, input_size: int = 96) -> nn.Module:
    """ShuffleNetV2 at one of the paper's widths (0.5, 1.0, 1.5, 2.0): channel split, shuffle, repeats [4, 8, 4]."""
    if width not in SHUFFLENET_V2:
        raise ValueError(f"width {width} must be one of the paper's {sorted(SHUFFLENET_V2)}")
    _check(width, input_size, 32)
    return ShuffleNetV2(num_classes, in_channels, width, input_size)


# --- LSTM keyword spotter -----------------------------------------------------------------------------------------


class LSTMKWS(nn.Module):
    def __init__(self, num_classes: int, n_mfcc: int, hidden: int):
        super().__init__()
        self.lstm = nn.LSTM(n_mfcc, hidden, batch_first=True)
        self.classifier = nn.Linear(hidden, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        seq = x.flatten(1, 2) if x.shape[1] == 1 else x  # (N, 1, T, F) -> (N, T, F)
        out, _ = self.lstm(seq)
        return self.classifier(out[:, -1])


def lstm_kws(num_classes: int = 12, n_mfcc: int = 10, hidden: int = 64) -> nn.Module:
    """One LSTM layer over (N, 1, frames, n_mfcc) MFCC frames, its last output classified (the "Hello Edge" LSTM
    without the projection layer); ~20k parameters at hidden 64."""
    if hidden < 1:
        raise ValueError("hidden must be at least 1")
    return LSTMKWS(num_classes, n_mfcc, hidden)
