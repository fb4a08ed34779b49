"""The model registry: zoo names -> factories, and building models by name.

Architecture modules register their factories with ``@MODELS.register``; importing
:mod:`ttmpd.models` imports them all, which only fills this in-memory mapping.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .._registry import Registry
from ..errors import InputError

ModelFactory = Callable[..., nn.Module]

MODELS: Registry[ModelFactory] = Registry("model")


@dataclass(frozen=True)
class ModelInfo:
    """What ``ttmpd models`` shows about a zoo model (no MACs: those depend on the input)."""

    name: str
    default_num_classes: int | None
    num_params: int
    in_channels: int
    summary: str

    @property
    def params_m(self) -> float:
        """Parameter count in millions."""
        return self.num_params / 1e6


def list_models() -> list[str]:
    """The zoo's model names, sorted."""
    return MODELS.names()


def _check_positive_int(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InputError(f"{name} must be a positive integer, got {value!r}")


def create_model(
    name: str, *, in_channels: int = 3, num_classes: int | None = None, **kwargs: Any
) -> nn.Module:
    """Build the zoo model ``name`` with fresh (Kaiming) weights.

    ``num_classes=None`` keeps the architecture's default (1000 for ImageNet models, 10 for
    CIFAR ResNets); other keyword arguments go to the factory (e.g. ``width_mult`` of
    ``mobilenet_v2``). Unknown names raise :class:`~ttmpd._registry.UnknownNameError` and
    bad arguments :class:`~ttmpd.errors.InputError`, both listing the valid choices.
    """
    factory = MODELS.get(name)
    _check_positive_int("in_channels", in_channels)
    kwargs["in_channels"] = in_channels
    if num_classes is not None:
        _check_positive_int("num_classes", num_classes)
        kwargs["num_classes"] = num_classes
    signature = inspect.signature(factory)
    try:
        signature.bind(**kwargs)
    except TypeError as exc:
        valid = ", ".join(signature.parameters) or "(none)"
        raise InputError(
            f"model {name!r} does not accept these arguments ({exc}); valid keyword "
            f"arguments: {valid}"
        ) from None
    return factory(**kwargs)


def default_num_classes(name: str) -> int | None:
    """The ``num_classes`` default of the zoo model ``name`` (None if it has none)."""
    parameter = inspect.signature(MODELS.get(name)).parameters.get("num_classes")
    if parameter is None or parameter.default is inspect.Parameter.empty:
        return None
    return parameter.default


def model_info(name: str, *, in_channels: int = 3) -> ModelInfo:
    """Describe the zoo model ``name``; it is built on the ``meta`` device, so this is cheap."""
    with torch.device("meta"):
        model = create_model(name, in_channels=in_channels)
    doc = inspect.getdoc(MODELS.get(name)) or ""
    return ModelInfo(
        name=name,
        default_num_classes=default_num_classes(name),
        num_params=sum(p.numel() for p in model.parameters()),
        in_channels=in_channels,
        summary=doc.splitlines()[0] if doc else "",
    )
