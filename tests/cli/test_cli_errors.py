"""Acceptance: bad input gets one clear line on stderr and exit code 2, never a traceback or
a half-written file.

Every case runs the CLI in a process of its own (forked from a server that imported it
once, see :mod:`cli_process`; ``python -m ttmpd`` where the case sets ``PYTHONPATH``) in its
own directory and checks the exit code, that stderr is exactly one line naming the
problem, and that the directory holds exactly the files it held before (no output, no
``.journal``, no ``.*.tmp``), byte for byte. A module fixture starts them all at once on a
small thread pool and each parametrized test checks one result.
"""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from cli_process import run_cli

from ttmpd.lut import LatencyTable, profile_model
from ttmpd.models import load_model, save_checkpoint
from ttmpd.profiler import BackendConfig, get_backend

SHAPE = "1,3,16,16"
TIMEOUT_S = 120

FACTORY = """\
from torch import nn


def tiny():
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(),
        nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10),
    )


def boom():
    raise RuntimeError("kaboom from the factory")
"""

Setup = Callable[[Path, Path], None]  # (case directory, shared directory)


@dataclass(frozen=True)
class Case:
    argv: tuple[str, ...]  # "{shared}" is replaced by the shared directory
    words: tuple[str, ...] = ()  # each must appear in the error line (case-insensitive)
    setup: Setup | None = None
    env: tuple[tuple[str, str], ...] = ()  # extra environment ("{shared}" replaced)


# ----- setups: write the bad input into the case directory ---------------------------------
def _copy(src: str, dst: str) -> Setup:
    def setup(d: Path, shared: Path) -> None:
        (d / dst).write_bytes((shared / src).read_bytes())

    return setup


def _random_bytes(d: Path, shared: Path) -> None:
    (d / "x.parquet").write_bytes(np.random.default_rng(0).bytes(4096))


def _truncated_parquet(d: Path, shared: Path) -> None:
    data = (shared / "ref.parquet").read_bytes()
    (d / "x.parquet").write_bytes(data[: len(data) // 2])


def _truncated_csv(d: Path, shared: Path) -> None:
    """A copy cut inside the last row's ``unstable`` field ("False" -> "Fa")."""
    text = (shared / "ref.csv").read_text()
    cut = text.rindex(",False,") + len(",Fa")
    (d / "x.csv").write_text(text[:cut])


def _pandas_parquet(d: Path, shared: Path) -> None:
    LatencyTable.load(shared / "ref.parquet").frame.to_parquet(d / "x.parquet")


def _headerless_csv(d: Path, shared: Path) -> None:
    """The right columns and rows, written by plain pandas: no ``# ttmpd-lut`` line."""
    LatencyTable.load(shared / "ref.parquet").frame.to_csv(d / "x.csv", index=False)


def _future_parquet(d: Path, shared: Path) -> None:
    arrow = pq.read_table(shared / "ref.parquet")
    meta = dict(arrow.schema.metadata)
    info = json.loads(meta[b"ttmpd"])
    info["schema_version"] = 99
    meta[b"ttmpd"] = json.dumps(info).encode()
    pq.write_table(arrow.replace_schema_metadata(meta), d / "x.parquet")


def _future_csv(d: Path, shared: Path) -> None:
    header, rest = (shared / "ref.csv").read_text().split("\n", 1)
    prefix, _, meta = header.partition("{")
    info = json.loads("{" + meta)
    info["schema_version"] = 99
    (d / "x.csv").write_text(prefix + json.dumps(info) + "\n" + rest)


def _tampered_csv(d: Path, shared: Path) -> None:
    """One row's ``in_channels`` changed, so its key no longer matches its columns."""
    header, rest = (shared / "ref.csv").read_text().split("\n", 1)
    rows = list(csv.reader(io.StringIO(rest)))
    col = rows[0].index("in_channels")
    row = next(r for r in rows[1:] if r[rows[0].index("op")] == "conv")
    row[col] = str(int(row[col]) + 8)
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    (d / "x.csv").write_text(header + "\n" + buf.getvalue())


def _regular_file(name: str) -> Setup:
    def setup(d: Path, shared: Path) -> None:
        (d / name).write_text("not a directory\n")

    return setup


# ----- the cases -----------------------------------------------------------------------------
def _profile(*args: str, model: str = "{shared}/models.py:tiny", out: str = "x.parquet"):
    return ("profile", "--model", model, "--input-shape", SHAPE, "--backend", "fake",
            "--no-progress", "--out", out, *args)  # fmt: skip


def _with(args: tuple[str, ...], option: str, value: str) -> tuple[str, ...]:
    i = args.index(option)
    return (*args[: i + 1], value, *args[i + 2 :])


PROFILE_CASES = {
    "unknown-model": Case(_profile(model="resnet999"), ("unknown", "resnet999")),
    "shape-unparsable": Case(_with(_profile(), "--input-shape", "1,3,abc"), ("input shape",)),
    "shape-negative": Case(_with(_profile(), "--input-shape", "1,3,-16,16"), ("input shape",)),
    "shape-without-batch": Case(
        _with(_profile(), "--input-shape", "3x16"), ("does not run", "shape 3,16", "N,C,H,W")
    ),
    "shape-wrong-channels": Case(
        _with(_profile(), "--input-shape", "1,1,16,16"), ("does not run", "shape 1,1,16,16")
    ),
    "factory-missing": Case(_profile(model="{shared}/models.py:nope"), ("no factory", "nope")),
    "factory-raises": Case(_profile(model="{shared}/models.py:boom"), ("raised", "kaboom")),
    "factory-file-missing": Case(_profile(model="missing.py:tiny"), ("not found", "missing.py")),
    "factory-module-missing": Case(
        _profile(model="nosuchpkg_ttmpd.models:tiny"), ("nosuchpkg_ttmpd", "not importable")
    ),
    "backend-unknown": Case(_with(_profile(), "--backend", "tpu"), ("unknown backend", "tpu")),
    "out-under-proc": Case(
        _profile(out="/proc/ttmpd-test/x.parquet"), ("cannot create directory",)
    ),
    "out-parent-is-file": Case(
        _profile(out="blocker/x.parquet"), ("blocker",), _regular_file("blocker")
    ),
    "out-unknown-extension": Case(_profile(out="x.txt"), ("format", ".txt")),
    "out-exists": Case(_profile(), ("exists", "--resume"), _copy("ref.parquet", "x.parquet")),
    "sample-fraction-zero": Case(_profile("--sample-fraction", "0"), ("sample fraction",)),
}
CUDA_CASE = Case(_with(_profile(), "--backend", "torch-cuda"), ("torch-cuda", "unavailable"))
# argparse's own errors print the whole usage block before the error line.
NEGATIVE_FIRST_DIM = Case(_with(_profile(), "--input-shape", "-1,3,16,16"), ("input-shape",))

BAD_TABLES = {
    "random-bytes": ("x.parquet", _random_bytes, ("not a valid parquet",)),
    "truncated-parquet": ("x.parquet", _truncated_parquet, ("not a valid parquet",)),
    "pandas-parquet": ("x.parquet", _pandas_parquet, ("not a ttmpd latency table",)),
    "headerless-csv": ("x.csv", _headerless_csv, ("not a ttmpd latency table", "# ttmpd-lut")),
    "future-schema-parquet": ("x.parquet", _future_parquet, ("schema version 99", "upgrade")),
    "future-schema-csv": ("x.csv", _future_csv, ("schema version 99", "upgrade")),
    "tampered-row-csv": ("x.csv", _tampered_csv, ("does not match",)),
    "missing-file": ("x.parquet", None, ("does not exist",)),
}
TRUNCATED_CSV = ("x.csv", _truncated_csv, ("x.csv",))


def _table_cases(name, spec) -> dict[str, Case]:
    path, setup, words = spec
    return {
        f"show-{name}": Case(("lut", "show", path), words, setup),
        # a good table first: validation must still fail on the bad one
        f"validate-{name}": Case(("lut", "validate", "ref.parquet", path), words,
                                 _both(_copy("ref.parquet", "ref.parquet"), setup)),
    }  # fmt: skip


def _both(*setups: Setup | None) -> Setup:
    def setup(d: Path, shared: Path) -> None:
        for s in setups:
            if s is not None:
                s(d, shared)

    return setup


TABLE_CASES = {
    k: case for name, spec in BAD_TABLES.items() for k, case in _table_cases(name, spec).items()
}
MERGE_INPUTS = _both(_copy("ref.parquet", "a.parquet"), _copy("threads2.parquet", "b.parquet"))
MERGE_DIFFERENT = Case(
    ("lut", "merge", "a.parquet", "b.parquet", "--out", "m.parquet"),
    ("threads", "--force"),
    MERGE_INPUTS,
)
MERGE_FORCE = Case(
    ("lut", "merge", "a.parquet", "b.parquet", "--out", "m.parquet", "--force", "--json"),
    setup=MERGE_INPUTS,
)


def _distill_on(device: str, words: tuple[str, ...]) -> Case:
    """``ttmpd distill`` of real checkpoints onto ``device``."""
    argv = ("distill", "--teacher", "t.pt", "--student", "s.pt", "--data", "mnist")
    return Case((*argv, "--out", "out", "--device", device), words,
                _both(_copy("m.pt", "t.pt"), _copy("m.pt", "s.pt")))  # fmt: skip


# A table measured on another ISA (an AVX2 host): same everything else.
OTHER_ISA = "sse4_2,avx,avx2,fma,f16c"
NO_OPENVINO = "import sys\nraise ImportError('No module named openvino (test shim)')\n"
DEVICE_CASES = {
    "merge-other-isa": Case(
        ("lut", "merge", "a.parquet", "b.parquet", "--out", "m.parquet"),
        ("isa", OTHER_ISA, "--force"),
        _both(_copy("ref.parquet", "a.parquet"), _copy("avx2.parquet", "b.parquet")),
    ),
    "profile-resume-other-isa": Case(
        _profile("--resume"), ("another device", "isa"), _copy("avx2.parquet", "x.parquet")
    ),
    "predict-calibrate-other-isa": Case(
        (
            "predict",
            "--model",
            "{shared}/models.py:tiny",
            "--input-shape",
            SHAPE,
            "--lut",
            "x.parquet",
        ),
        ("another device", "isa", "--uncalibrated"),
        _copy("avx2.parquet", "x.parquet"),
    ),
    "openvino-missing": Case(
        _with(_profile(), "--backend", "openvino"),
        ("openvino", "pip install"),
        env=(("PYTHONPATH", "{shared}/no_openvino"),),
    ),
    "probe-fails": Case(
        _profile(), ("device probe failed", "fake"), env=(("TTMPD_FAKE_BLOCK", "-8"),)
    ),
    "cuda-device-3": Case(
        (*_with(_profile(), "--backend", "torch-cuda"), "--device", "3"),
        ("torch-cuda", "unavailable"),
    ),
    # the compute device of run/distill/prune: checked before a file is written
    "run-cuda-device-99": Case(
        (
            "run",
            "--model",
            "m.pt",
            "--data",
            "mnist",
            "--backend",
            "torch-cuda",
            "--device",
            "99",
            "--out",
            "out",
        ),
        ("torch-cuda", "unavailable"),
        _copy("m.pt", "m.pt"),
    ),
    "distill-cuda-99": _distill_on("cuda:99", ("device cuda:99",)),
    "distill-device-spelling": _distill_on("gpu", ("device must be", "'gpu'")),
    "prune-device-spelling": Case(
        (
            "prune",
            "--model",
            "m.pt",
            "--data",
            "mnist",
            "--lut",
            "x.parquet",
            "--budget",
            "0.5",
            "--out",
            "out",
            "--device",
            "cuda:x",
        ),
        ("device must be", "'cuda:x'"),
        _both(_copy("m.pt", "m.pt"), _copy("ref.parquet", "x.parquet")),
    ),
}

ALL_CASES: dict[str, Case] = {
    **DEVICE_CASES,
    **PROFILE_CASES,
    **({} if torch.cuda.is_available() else {"backend-cuda-unavailable": CUDA_CASE}),
    "shape-negative-first-dim": NEGATIVE_FIRST_DIM,
    **TABLE_CASES,
    **_table_cases("truncated-csv", TRUNCATED_CSV),
    "merge-different-devices": MERGE_DIFFERENT,
    "merge-force": MERGE_FORCE,
    "check-missing-file": Case(("lut", "check", "x.parquet"), ("does not exist",)),
    "check-too-few-anchors": Case(
        ("lut", "check", "ref.parquet", "--anchors", "2"),
        (">= 3 anchor rows",),
        _copy("ref.parquet", "ref.parquet"),
    ),
}


# ----- running -------------------------------------------------------------------------------
@dataclass
class Run:
    dir: Path
    before: dict[str, bytes]
    result: subprocess.CompletedProcess


def _snapshot(d: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(d)): p.read_bytes() if p.is_file() else b"<dir>"
        for p in sorted(d.rglob("*"))
    }


def _run(case: Case, d: Path, shared: Path) -> Run:
    if case.setup is not None:
        case.setup(d, shared)
    before = _snapshot(d)
    env: dict[str, str | None] = {"PYTHONDONTWRITEBYTECODE": "1", "TTMPD_FAKE_DELAY_MS": None}
    env.update({k: v.replace("{shared}", str(shared)) for k, v in case.env})
    argv = [a.replace("{shared}", str(shared)) for a in case.argv]
    if "PYTHONPATH" not in env:  # read at start-up: a forked child would not see it
        return Run(d, before, run_cli(argv, d, env, TIMEOUT_S))
    full = {**os.environ, **env}
    result = subprocess.run(
        [sys.executable, "-m", "ttmpd", *argv],
        cwd=d,
        env={k: v for k, v in full.items() if v is not None},
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )
    return Run(d, before, result)


@pytest.fixture(scope="module")
def shared(tmp_path_factory) -> Path:
    """A factory file and real tables: threads=1 (Parquet and CSV) and threads=2."""
    d = tmp_path_factory.mktemp("shared")
    (d / "models.py").write_text(FACTORY)
    model = load_model(f"{d}/models.py:tiny").eval()
    x = torch.randn(1, 3, 16, 16)
    for name, threads in (("ref.parquet", 1), ("ref.csv", 1), ("threads2.parquet", 2)):
        backend = get_backend("fake", BackendConfig(threads=threads))
        profile_model(model, x, backend, d / name, model_name="tiny", progress=False)
    ref = LatencyTable.load(d / "ref.parquet")
    other = replace(ref.meta, fingerprint=replace(ref.fingerprint, isa=OTHER_ISA))
    LatencyTable(ref.frame, other).save(d / "avx2.parquet")
    save_checkpoint(d / "m.pt", model, input_shape=(3, 16, 16), num_classes=10)
    (d / "no_openvino" / "openvino").mkdir(parents=True)
    (d / "no_openvino" / "openvino" / "__init__.py").write_text(NO_OPENVINO)
    return d


@pytest.fixture(scope="module")
def runs(shared, tmp_path_factory) -> Iterator[dict[str, Future[Run]]]:
    """Every case started at once (in its own directory); tests wait for their own."""
    pool = ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2))
    futures = {
        name: pool.submit(_run, case, tmp_path_factory.mktemp(name), shared)
        for name, case in ALL_CASES.items()
    }
    yield futures
    pool.shutdown(wait=True, cancel_futures=True)


def _assert_clean_failure(run: Run, case: Case) -> None:
    res = run.result
    assert res.returncode == 2, (res.returncode, res.stdout, res.stderr)
    assert "Traceback" not in res.stderr
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, res.stderr
    line = lines[0]
    assert line.startswith("ttmpd ") and "error:" in line, line
    for word in case.words:
        assert word.lower() in line.lower(), (word, line)
    assert res.stdout == ""
    after = _snapshot(run.dir)
    assert after == run.before, sorted(set(after) ^ set(run.before))  # nothing new or changed
    assert not list(run.dir.rglob("*.journal"))
    assert not list(run.dir.rglob(".*.tmp"))


def _check(runs, name: str) -> None:
    _assert_clean_failure(runs[name].result(), ALL_CASES[name])


@pytest.mark.parametrize("name", list(PROFILE_CASES))
def test_profile_bad_input(runs, name):
    _check(runs, name)
    if name == "out-under-proc":
        assert not Path("/proc/ttmpd-test").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
def test_profile_unavailable_backend(runs):
    _check(runs, "backend-cuda-unavailable")


def test_profile_negative_first_dimension_is_one_line(runs):
    # "-1,3,16,16" looks like an option to argparse: "expected one argument" plus usage.
    _check(runs, "shape-negative-first-dim")


@pytest.mark.parametrize("name", list(TABLE_CASES))
def test_lut_bad_table(runs, name):
    _check(runs, name)


@pytest.mark.parametrize("command", ["show", "validate"])
def test_lut_truncated_csv(runs, command):
    _check(runs, f"{command}-truncated-csv")


def test_merge_of_different_devices_is_refused(runs):
    _check(runs, "merge-different-devices")
    assert "threads (1 vs 2)" in runs["merge-different-devices"].result().result.stderr


def test_merge_force_writes_a_valid_table(runs, shared):
    run = runs["merge-force"].result()
    assert run.result.returncode == 0, run.result.stderr
    assert json.loads(run.result.stdout)["rows"] > 0
    merged = LatencyTable.load(run.dir / "m.parquet")
    a, b = LatencyTable.load(shared / "ref.parquet"), LatencyTable.load(shared / "threads2.parquet")
    assert set(merged.frame["key"]) == set(a.frame["key"]) | set(b.frame["key"])
    assert len(merged) == json.loads(run.result.stdout)["rows"]
    assert not list(run.dir.rglob(".*.tmp"))


@pytest.mark.parametrize("name", ["check-missing-file", "check-too-few-anchors"])
def test_lut_check_bad_input(runs, name):
    _check(runs, name)


@pytest.mark.parametrize("name", list(DEVICE_CASES))
def test_device_bad_input(runs, name):
    """Another ISA's table, a missing openvino, a failing probe, a GPU that is not there."""
    _check(runs, name)


def test_every_case_is_checked():
    """Guard against a case added to ALL_CASES but never asserted on."""
    checked = {*PROFILE_CASES, *TABLE_CASES, *DEVICE_CASES, "backend-cuda-unavailable"}
    checked |= {"shape-negative-first-dim", "show-truncated-csv", "validate-truncated-csv"}
    checked |= {"merge-different-devices", "merge-force"}
    checked |= {"check-missing-file", "check-too-few-anchors"}
    assert checked >= set(ALL_CASES)
