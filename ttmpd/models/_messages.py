"""Turn exceptions into the one-line fragments our error messages embed."""

from __future__ import annotations

_MAX_CHARS = 200


def one_line(exc: BaseException) -> str:
    """``"TypeError: first line of the message"``, shortened to fit in a one-line error."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    text = f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__
    return text if len(text) <= _MAX_CHARS else text[: _MAX_CHARS - 3] + "..."
