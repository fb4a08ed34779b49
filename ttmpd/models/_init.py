"""The weight initialisation shared by every zoo model."""

from __future__ import annotations

from torch import nn


def init_weights(model: nn.Module) -> None:
    """Kaiming-normal (fan_out, ReLU gain) convolutions, unit BatchNorm, N(0, 0.01) linears.

    This is the scheme of He et al. (2015) as used by torchvision's ResNet/MobileNetV2/VGG;
    biases start at zero. It runs on the ``meta`` device too (then it does nothing).
    """
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.BatchNorm2d | nn.GroupNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, 0.0, 0.01)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
