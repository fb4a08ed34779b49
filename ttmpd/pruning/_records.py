"""The records of channel groups: a group and where its units sit in each member."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import InputError
from ._units import CHANNEL, KINDS

SIDES = ("out", "in")


@dataclass(frozen=True)
class MemberSlice:
    """Where a group's units sit in one member: ``indices[k]`` along the member's
    channel dimension belongs to unit ``root_indices[k]`` (a root channel for plain groups;
    a flatten before a linear maps one channel to several input features)."""

    path: str
    side: str
    indices: tuple[int, ...]
    root_indices: tuple[int, ...]


@dataclass(frozen=True)
class ChannelGroup:
    """Channels that are pruned together.

    ``id`` is the root module path (``"<attention module>#heads"`` for heads),
    ``channels`` the current number of units (channels, conv-group offsets, heads or head
    dims, see ``unit``), ``members`` the sorted ``(module_path, "out"|"in")`` pairs whose
    channels change with the group. ``prunable`` is False for model outputs, input-coupled,
    ignored or unresolved groups; ``reason`` then says why. ``slices`` (not compared) map
    each member's channels to units.
    """

    id: str
    channels: int
    members: tuple[tuple[str, str], ...]
    prunable: bool
    reason: str = ""
    slices: tuple[MemberSlice, ...] = field(default=(), compare=False, repr=False)
    unit: str = CHANNEL

    def __post_init__(self) -> None:
        if not self.id or not isinstance(self.id, str):
            raise InputError(f"group id must be a non-empty module path, got {self.id!r}")
        if isinstance(self.channels, bool) or not isinstance(self.channels, int):
            raise InputError(f"group {self.id}: channels must be an int, got {self.channels!r}")
        if self.channels < 1:
            raise InputError(f"group {self.id}: channels must be >= 1, got {self.channels}")
        for member in self.members:
            if len(member) != 2 or member[1] not in SIDES:
                raise InputError(f"group {self.id}: bad member {member!r}; use (path, 'out'|'in')")
        if self.prunable == bool(self.reason):
            raise InputError(f"group {self.id}: give a reason exactly when it is not prunable")
        if self.unit not in KINDS:
            raise InputError(f"group {self.id}: unit {self.unit!r} is not one of {KINDS}")

    def paths(self, side: str | None = None) -> tuple[str, ...]:
        """Member module paths, optionally only those on ``side`` ("out" or "in")."""
        return tuple(p for p, s in self.members if side is None or s == side)


__all__ = ["SIDES", "ChannelGroup", "MemberSlice"]
