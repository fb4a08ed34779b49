"""Old public names that still resolve, with a warning, for one release after a rename."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from typing import Any


def renamed_attributes(
    module: str, names: Mapping[str, Any], renamed: Mapping[str, str]
) -> Callable:
    """A module ``__getattr__`` for ``module``: ``old`` (a key of ``renamed``) returns
    ``names[renamed[old]]`` with a ``DeprecationWarning``; other names raise AttributeError."""

    def __getattr__(name: str) -> Any:
        if name in renamed:
            new = renamed[name]
            warnings.warn(f"{module}.{name} is now {module}.{new}", DeprecationWarning,
                          stacklevel=2)  # fmt: skip
            return names[new]
        raise AttributeError(f"module {module!r} has no attribute {name!r}")

    return __getattr__
