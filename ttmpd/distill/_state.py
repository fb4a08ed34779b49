"""The resumable training state: one ``train_state.pt`` written atomically.

It holds the state_dicts of the student, the losses (connectors, memory banks), the scheme
(auxiliary heads, peer, discriminator and its optimiser), the optimiser and the schedule,
the torch RNG state, the position (epoch, step within the epoch, global step), the running
sums of the current epoch and the history rows. Batch order and stored-view choice are
drawn from ``numpy.random.default_rng([seed, epoch])``, so they need no saved state. The
file also records the configuration signature and the cache fingerprint; resuming with
other settings raises InputError naming the difference.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from .._io import atomic_path
from ..errors import InputError, TtmpdError

STATE_FILE = "train_state.pt"
STATE_FORMAT = "ttmpd.distill.state"
SCHEMA_VERSION = 1


class DistillInterrupted(TtmpdError):
    """Distillation was interrupted (Ctrl-C); a resumable checkpoint was written."""

    exit_code = 130


def save_state(out_dir: str | os.PathLike, state: dict[str, Any]) -> Path:
    path = Path(out_dir) / STATE_FILE
    payload = {"format": STATE_FORMAT, "schema_version": SCHEMA_VERSION, **state}
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return path


def load_state(out_dir: str | os.PathLike, signature: dict, fingerprint: str) -> dict[str, Any]:
    path = Path(out_dir) / STATE_FILE
    if not path.is_file():
        raise InputError(f"--resume: no training state {path}; run without --resume to start fresh")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types on damaged files
        raise InputError(f"{path} cannot be read ({exc}); delete it and start fresh") from None
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise InputError(f"{path} is not a ttmpd distillation state; delete it and start fresh")
    if state.get("schema_version") != SCHEMA_VERSION:
        raise InputError(
            f"{path} has state schema_version {state.get('schema_version')!r}, this ttmpd "
            f"writes {SCHEMA_VERSION}; start fresh without --resume"
        )
    saved = state.get("signature", {})
    changed = sorted(k for k in set(saved) | set(signature) if saved.get(k) != signature.get(k))
    if changed:
        diffs = ", ".join(f"{k}: {saved.get(k)!r} -> {signature.get(k)!r}" for k in changed)
        raise InputError(
            f"--resume with other settings than {path} was written with ({diffs}); use the "
            "same settings or a new --out"
        )
    if state.get("fingerprint") != fingerprint:
        raise InputError(
            f"--resume: the teacher, data or subset differ from those {path} was trained on; "
            "use the same inputs or a new --out"
        )
    return state
