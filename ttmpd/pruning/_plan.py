"""Prune plans: which channels of which groups to keep, for which model; JSON persistence.

A plan stored with :meth:`PrunePlan.to_json` is one JSON object::

    {
      "format": "ttmpd.prune_plan",
      "schema_version": 1,
      "fingerprint": [["conv1", [16, 3, 3, 3]], ["bn1", [16]], ...],
      "groups": {"layer1.0.conv1": {"channels": 16, "keep": [0, 2, 3, ...]}, ...},
      "metadata": {"generator": "random_plan", "seed": 0, ...}
    }

``fingerprint`` lists ``(module path, weight shape)`` of every module with a ``weight``
tensor in the *original* model, in module order; a plan applies only to that model.
``groups`` maps a group id (:class:`~ttmpd.pruning.ChannelGroup`) to its original channel
count and the sorted indices to keep; groups not listed are left whole.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .._io import atomic_path
from ..errors import InputError

PLAN_FORMAT = "ttmpd.prune_plan"
SCHEMA_VERSION = 1

Fingerprint = tuple[tuple[str, tuple[int, ...]], ...]


def model_fingerprint(model: nn.Module) -> Fingerprint:
    """``(module path, weight shape)`` of every module with a ``weight`` tensor, in order."""
    return tuple(
        (name, tuple(int(d) for d in module.weight.shape))
        for name, module in model.named_modules()
        if isinstance(getattr(module, "weight", None), torch.Tensor)
    )


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _normalize_keep(gid: str, channels: Any, keep: Any) -> tuple[int, tuple[int, ...]]:
    if not _is_int(channels) or channels < 1:
        raise InputError(f"plan group {gid!r}: channels must be a positive int, got {channels!r}")
    if isinstance(keep, str | bytes) or not hasattr(keep, "__iter__"):
        raise InputError(f"plan group {gid!r}: keep must be a list of channel indices")
    keep = list(keep)
    if not all(_is_int(i) for i in keep):
        raise InputError(f"plan group {gid!r}: channel indices must be ints, got {keep!r}")
    if not keep:
        raise InputError(
            f"plan group {gid!r} keeps 0 channels; keep at least one (remove the group from "
            "the network by other means)"
        )
    bad = [i for i in keep if not 0 <= i < channels]
    if bad:
        raise InputError(
            f"plan group {gid!r}: channel index {bad[0]} is out of range for {channels} "
            f"channels; use indices 0..{channels - 1}"
        )
    if len(set(keep)) != len(keep):
        dup = next(i for i in keep if keep.count(i) > 1)
        raise InputError(f"plan group {gid!r}: channel {dup} is listed twice; list each once")
    return channels, tuple(sorted(keep))


def _check_plain(value: Any, where: str) -> None:
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InputError(
            f"{where} must hold plain JSON values (str, number, list, dict): {exc}"
        ) from None


@dataclass(frozen=True)
class PrunePlan:
    """Channels to keep per group (sorted tuples), with the original counts and model.

    ``keep[group_id]`` are the root channel indices that survive; ``channels[group_id]``
    the group's original count. ``fingerprint`` identifies the original model
    (:func:`model_fingerprint`). Invalid content raises :class:`~ttmpd.errors.InputError`.
    """

    keep: Mapping[str, tuple[int, ...]]
    channels: Mapping[str, int]
    fingerprint: Fingerprint
    metadata: Mapping[str, Any] = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION

    def __post_init__(self) -> None:
        if self.schema_version != SCHEMA_VERSION:
            raise InputError(
                f"prune plan schema version {self.schema_version!r} is not supported (this "
                f"ttmpd reads version {SCHEMA_VERSION}); regenerate the plan with this ttmpd"
            )
        if set(self.keep) != set(self.channels):
            odd = sorted(set(self.keep) ^ set(self.channels))[0]
            raise InputError(f"plan group {odd!r} needs both a channel count and kept indices")
        keep, channels = {}, {}
        for gid in sorted(self.keep):
            if not isinstance(gid, str) or not gid:
                raise InputError(f"plan group ids must be module paths, got {gid!r}")
            channels[gid], keep[gid] = _normalize_keep(gid, self.channels[gid], self.keep[gid])
        fingerprint = []
        for entry in self.fingerprint:
            try:
                path, shape = entry
                shape = tuple(int(d) for d in shape)
            except (TypeError, ValueError):
                raise InputError(
                    f"plan fingerprint entries must be (module path, weight shape), got {entry!r}"
                ) from None
            fingerprint.append((str(path), shape))
        if not isinstance(self.metadata, Mapping):
            raise InputError("plan metadata must be a dict")
        metadata = dict(self.metadata)
        _check_plain(metadata, "plan metadata")
        object.__setattr__(self, "keep", keep)
        object.__setattr__(self, "channels", channels)
        object.__setattr__(self, "fingerprint", tuple(fingerprint))
        object.__setattr__(self, "metadata", metadata)

    # -- derived -------------------------------------------------------------------------
    def removed(self, group_id: str) -> tuple[int, ...]:
        """The channel indices of ``group_id`` the plan removes."""
        kept = set(self.keep[group_id])
        return tuple(i for i in range(self.channels[group_id]) if i not in kept)

    @property
    def removed_fraction(self) -> float:
        """Removed channels over all channels of the groups in the plan (0 if empty)."""
        total = sum(self.channels.values())
        kept = sum(len(k) for k in self.keep.values())
        return 0.0 if total == 0 else (total - kept) / total

    # -- persistence ---------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "format": PLAN_FORMAT,
            "schema_version": self.schema_version,
            "fingerprint": [[p, list(s)] for p, s in self.fingerprint],
            "groups": {
                gid: {"channels": self.channels[gid], "keep": list(self.keep[gid])}
                for gid in self.keep
            },
            "metadata": dict(self.metadata),
        }

    @classmethod
    def from_dict(cls, data: Any, source: str = "prune plan") -> PrunePlan:
        if not isinstance(data, dict) or data.get("format") != PLAN_FORMAT:
            raise InputError(f"{source} is not a ttmpd prune plan (no format {PLAN_FORMAT!r})")
        version = data.get("schema_version")
        if version != SCHEMA_VERSION:
            raise InputError(
                f"{source} has schema version {version!r}, this ttmpd reads version "
                f"{SCHEMA_VERSION}; regenerate the plan with this ttmpd"
            )
        groups = data.get("groups")
        if not isinstance(groups, dict) or not all(
            isinstance(g, dict) and set(g) == {"channels", "keep"} for g in groups.values()
        ):
            raise InputError(f"{source}: 'groups' must map ids to {{'channels', 'keep'}}")
        if not isinstance(data.get("fingerprint"), list):
            raise InputError(f"{source}: 'fingerprint' must be a list of [path, shape]")
        return cls(
            keep={gid: g["keep"] for gid, g in groups.items()},
            channels={gid: g["channels"] for gid, g in groups.items()},
            fingerprint=tuple(tuple(e) if isinstance(e, list) else e for e in data["fingerprint"]),
            metadata=data.get("metadata") or {},
        )

    def to_json(self, path: str | Path) -> Path:
        """Write the plan as JSON to ``path`` atomically; returns the path."""
        text = json.dumps(self.to_dict(), indent=1, allow_nan=False)
        with atomic_path(path) as tmp:
            tmp.write_text(text + "\n", encoding="utf-8")
        return Path(path)

    @classmethod
    def from_json(cls, path: str | Path) -> PrunePlan:
        """Load a plan written by :meth:`to_json`; bad files raise InputError."""
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise InputError(f"cannot read prune plan {path}: {exc.strerror}") from None
        try:
            data = json.loads(text)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise InputError(
                f"prune plan {path} is not valid JSON ({exc}); regenerate it"
            ) from None
        return cls.from_dict(data, source=f"prune plan {path}")


def ratio_ok(value: float, name: str, upper: float = 1.0) -> float:
    """``value`` as a float in [0, upper), or InputError."""
    try:
        ratio = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{name} must be a number in [0, {upper}), got {value!r}") from None
    if not math.isfinite(ratio) or not 0.0 <= ratio < upper:
        raise InputError(f"{name} must be in [0, {upper}), got {value!r}")
    return ratio


__all__ = ["PLAN_FORMAT", "SCHEMA_VERSION", "Fingerprint", "PrunePlan", "model_fingerprint"]
