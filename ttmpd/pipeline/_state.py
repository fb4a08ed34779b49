"""``OUT/run.json``: the configuration of a run and what each finished stage reported.

The file is rewritten atomically after every stage, so a run killed at any point restarts
(``resume=True``) after the last finished stage. A stage's own outputs are files in ``OUT``;
``run.json`` only records that it finished, its wall time and its figures.
"""

from __future__ import annotations

import json
from pathlib import Path

from .._io import atomic_path
from ..errors import InputError

STATE_FILE = "run.json"
FORMAT = "ttmpd-run"


class RunState:
    """Finished stages of the run in ``out`` (see the module docstring)."""

    def __init__(self, out: Path, signature: dict, resume: bool) -> None:
        self.path = out / STATE_FILE
        self.signature = signature
        self.stages: dict[str, dict] = {}
        if self.path.exists():
            if not resume:
                raise InputError(
                    f"{out} already holds a run; pass --resume to continue it or choose "
                    "another --out"
                )
            self._load()
        elif resume:
            raise InputError(f"nothing to resume: {self.path} does not exist; drop --resume")

    def _load(self) -> None:
        try:
            payload = json.loads(self.path.read_text())
            if payload.get("format") != FORMAT:
                raise ValueError("not a ttmpd run")
        except (OSError, ValueError, AttributeError) as exc:
            raise InputError(
                f"cannot resume from {self.path} ({exc}); start again with another --out"
            ) from None
        saved = payload.get("config", {})
        differ = sorted(k for k in set(saved) | set(self.signature)
                        if saved.get(k) != self.signature.get(k))  # fmt: skip
        if differ:
            details = ", ".join(f"{k}: {saved.get(k)!r} -> {self.signature.get(k)!r}"
                                for k in differ)  # fmt: skip
            raise InputError(
                f"--resume with other settings than the run in {self.path.parent} ({details}); "
                "use the original settings or another --out"
            )
        self.stages = dict(payload.get("stages", {}))

    def done(self, stage: str) -> bool:
        return stage in self.stages

    def record(self, stage: str, seconds: float, figures: dict) -> None:
        self.stages[stage] = {"seconds": round(seconds, 3), **figures}
        self.save()

    def save(self) -> None:
        payload = {"format": FORMAT, "config": self.signature, "stages": self.stages}
        with atomic_path(self.path) as tmp:
            tmp.write_text(json.dumps(payload, indent=2, default=str) + "\n")
