"""The corruption record, its registry, and :func:`corrupt` which applies one to a batch.

A corruption is a function ``f(x, *params, rng) -> x`` on ``float32`` images ``(N, H, W, C)``
in [0, 1] plus a table of its parameters for severities 1..5. :func:`corrupt` converts the
``uint8`` input, scales the spatial parameters to the image size, runs the function in chunks
and converts back. Parameters whose unit is ``"px@32"`` are pixel lengths on a 32-pixel
image (CIFAR-10) and are multiplied by ``min(H, W) / 32``, so a 28x28 digit gets 0.875 times
the CIFAR value and a 224x224 image seven times it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..._registry import Registry
from ...errors import InputError
from ..dataset import as_nhwc

SEVERITIES = (1, 2, 3, 4, 5)
REFERENCE_SIDE = 32
"""Spatial parameters (unit ``"px@32"``) are tabulated for images with this shorter side."""
SPATIAL_UNIT = "px@32"
CHUNK = 2048
"""Images corrupted per call of the corruption function (bounds peak memory)."""

CorruptionFn = Callable[..., np.ndarray]


@dataclass(frozen=True)
class Corruption:
    """One corruption and its per-severity parameter table.

    Attributes:
        name: registry name, e.g. ``"gaussian_noise"``.
        family: ``"noise"``, ``"blur"``, ``"photometric"`` or ``"geometric"``.
        description: one line saying what the function does.
        params: parameter names, in the order the function takes them.
        units: one unit per parameter; ``"px@32"`` marks spatial parameters scaled with size.
        table: five rows (severities 1..5), one value per parameter.
        random: whether the result depends on the seed.
        fn: ``fn(x, *params, rng=rng) -> x`` on ``float32`` ``(N, H, W, C)`` in [0, 1].
    """

    name: str
    family: str
    description: str
    params: tuple[str, ...]
    units: tuple[str, ...]
    table: tuple[tuple[float, ...], ...]
    random: bool
    fn: CorruptionFn

    def __post_init__(self) -> None:
        if len(self.table) != len(SEVERITIES):
            raise ValueError(f"{self.name}: table needs {len(SEVERITIES)} rows")
        if len(self.units) != len(self.params) or any(
            len(row) != len(self.params) for row in self.table
        ):
            raise ValueError(f"{self.name}: table rows and units must match params")

    def row(self, severity: int) -> dict[str, float]:
        """The tabulated parameters of ``severity`` (1..5), before size scaling."""
        _check_severity(severity, allow_zero=False)
        return dict(zip(self.params, self.table[severity - 1], strict=True))

    def effective(self, severity: int, image_hw: tuple[int, int]) -> dict[str, float]:
        """The parameters actually used at ``severity`` on images of ``image_hw`` pixels."""
        scale = min(image_hw) / REFERENCE_SIDE
        return {
            name: value * scale if unit == SPATIAL_UNIT else value
            for (name, value), unit in zip(self.row(severity).items(), self.units, strict=True)
        }

    def as_dict(self) -> dict[str, object]:
        """A JSON-ready description with the whole table."""
        return {
            "name": self.name,
            "family": self.family,
            "description": self.description,
            "random": self.random,
            "params": list(self.params),
            "units": list(self.units),
            "severities": {
                str(s): dict(zip(self.params, row, strict=True))
                for s, row in zip(SEVERITIES, self.table, strict=True)
            },
        }


CORRUPTIONS: Registry[Corruption] = Registry("corruption")


def register_corruption(
    name: str,
    *,
    family: str,
    description: str,
    params: tuple[str, ...],
    units: tuple[str, ...],
    table: tuple[tuple[float, ...], ...],
    random: bool,
) -> Callable[[CorruptionFn], CorruptionFn]:
    """Decorator: register ``fn`` as corruption ``name`` with its severity table."""

    def decorator(fn: CorruptionFn) -> CorruptionFn:
        record = Corruption(name, family, description, params, units, table, random, fn)
        CORRUPTIONS.register(name)(record)
        return fn

    return decorator


def _check_severity(severity: int, *, allow_zero: bool) -> None:
    low = 0 if allow_zero else 1
    if isinstance(severity, bool) or not isinstance(severity, int | np.integer):
        raise InputError(f"severity {severity!r} must be an integer in {low}..5")
    if not low <= severity <= 5:
        raise InputError(
            f"severity {severity} is out of range; use {low}..5"
            + (" (0 = clean copy)" if allow_zero else "")
        )


def get_corruption(name: str) -> Corruption:
    """The registered corruption ``name``; unknown names list the valid ones."""
    return CORRUPTIONS.get(name)


def list_corruptions() -> list[str]:
    """Sorted names of all registered corruptions."""
    return CORRUPTIONS.names()


def corrupt(images: np.ndarray, name: str, severity: int, seed: int = 0) -> np.ndarray:
    """Apply corruption ``name`` at ``severity`` to a batch of images.

    Args:
        images: ``uint8`` ``(N, H, W)`` or ``(N, H, W, C)`` with C in {1, 3}, any size.
        name: a name from :func:`list_corruptions`.
        severity: 1..5, or 0 for an unchanged copy.
        seed: seed of the random parts (noise, fields, directions); the same seed gives the
            same output, bit for bit. Deterministic corruptions ignore it.

    Returns:
        ``uint8`` array of the input's shape.
    """
    record = get_corruption(name)
    _check_severity(severity, allow_zero=True)
    original = np.asarray(images)
    nhwc = as_nhwc(original)
    if severity == 0 or len(nhwc) == 0:
        return original.copy()
    if min(nhwc.shape[1:3]) < 4:
        raise InputError(f"images of {nhwc.shape[1:3]} pixels are too small; use at least 4x4")
    params = tuple(record.effective(int(severity), nhwc.shape[1:3]).values())
    rng = np.random.default_rng(seed)
    out = np.empty_like(nhwc)
    for start in range(0, len(nhwc), CHUNK):
        x = nhwc[start : start + CHUNK].astype(np.float32) / np.float32(255)
        y = record.fn(x, *params, rng=rng)
        out[start : start + CHUNK] = np.rint(np.clip(y, 0.0, 1.0) * 255).astype(np.uint8)
    return out.reshape(original.shape)
