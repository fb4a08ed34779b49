"""Shared output of the benchmarks: a markdown table on stdout, CSV + JSON on disk."""

from __future__ import annotations

import datetime as dt
import json
import sys
from pathlib import Path

import pandas as pd

from ttmpd.profiler import cpu_info
from ttmpd.profiler._fingerprint import cpu_isa, kernel_isa

RESULTS = Path(__file__).parent / "results"


def markdown_table(frame: pd.DataFrame, digits: int = 2) -> str:
    def fmt(v: object) -> str:
        return f"{v:.{digits}f}" if isinstance(v, float) else str(v)

    header = "| " + " | ".join(frame.columns) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    rows = ["| " + " | ".join(fmt(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([header, rule, *rows])


def machine() -> str:
    """CPU, cores, the widest vector ISA it has and the kernels' ISA in this process (an
    emulated other host shows as ``ONEDNN_MAX_CPU_ISA=AVX2``)."""
    cpu, cores, logical = cpu_info()
    flags = cpu_isa().split(",")
    widest = next((f for f in ("avx512f", "avx2", "avx", "asimd") if f in flags), "?")
    return f"{cpu}, {cores} cores ({logical} logical), {widest}, kernels {kernel_isa()}, shared"


def write_results(out: Path, frame: pd.DataFrame, **meta: object) -> None:
    """``out.csv`` (the rows) and ``out.json`` (metadata + rows)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    info = {
        "date": dt.date.today().isoformat(),
        "machine": machine(),
        "command": "python " + " ".join(sys.argv),
        **meta,
    }
    frame.to_csv(out.with_suffix(".csv"), index=False)
    payload = {"meta": info, "results": frame.to_dict("records")}
    out.with_suffix(".json").write_text(json.dumps(payload, indent=2, default=str) + "\n")
