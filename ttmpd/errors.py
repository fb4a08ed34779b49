"""Exceptions raised by ttmpd.

Every error a user can cause derives from :class:`TtmpdError`; its message is one line that
names the bad value and the fix. The CLI prints it on stderr and exits with code 2.
"""


class TtmpdError(Exception):
    """Base class of all user-facing ttmpd errors."""


class InputError(TtmpdError, ValueError):
    """A bad argument: unknown name, unparsable shape, out-of-range value."""


class ModelLoadError(TtmpdError):
    """A model (zoo name, factory, checkpoint) could not be loaded."""


class BackendUnavailableError(TtmpdError):
    """The requested backend cannot run on this machine."""


class LutError(TtmpdError):
    """A latency table is corrupted, foreign, of another schema version, or incompatible."""


class OutputError(TtmpdError):
    """An output path cannot be written."""


class ProbeError(TtmpdError):
    """A backend's device probe (layout and dispatch rules) failed on this machine."""


class ExecutorError(TtmpdError):
    """Jobs cannot run where asked: Ray missing, a cluster unreachable, a device resource
    that no node carries, or jobs that failed after their retries."""


_MAX_CHARS = 200


def one_line(exc: BaseException) -> str:
    """``"TypeError: first line of the message"``, shortened to 200 characters, for error
    messages and reports that embed another error."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    text = f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__
    return text if len(text) <= _MAX_CHARS else text[: _MAX_CHARS - 3] + "..."
