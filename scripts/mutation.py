"""Mutation score of the core modules, with mutmut.

    python scripts/mutation.py [module ...] [--jobs N]

Each module is mutated in its own scratch project under ``build/mutation/<module>/`` (links to
``ttmpd/`` and ``tests/`` plus a ``pyproject.toml`` whose ``[tool.mutmut]`` names only that
module and only its test files), so a mutant runs just the tests of its module that reach the
mutated function, never the whole suite. Every run starts from a fresh scratch project.

The score is ``killed / (mutants - equivalent)``: a mutant is killed when a test fails, times
out or crashes; "no tests" and "suspicious" count as surviving. Equivalent mutants (no test can
tell them from the original) are listed with their reason in
``docs/design/mutation-equivalents.md``; their names hold while the module's source is unchanged.
Mutants an interrupted run never checked are counted apart ("unchecked") and left out too.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "build" / "mutation"
EQUIVALENTS = ROOT / "docs" / "design" / "mutation-equivalents.md"

# module -> (files to mutate, the test files that exercise it)
MODULES: dict[str, tuple[list[str], list[str]]] = {
    "distill/_losses": (
        ["ttmpd/distill/_losses/*"],
        [
            "tests/distill/test_losses.py",
            "tests/distill/test_losses_reference.py",
            "tests/distill/test_token_features.py",
        ],
    ),
    "distill/_selection": (
        ["ttmpd/distill/_selection.py"],
        ["tests/distill/test_selection.py", "tests/distill/test_cache.py"],
    ),
    "pruning/_proxies": (["ttmpd/pruning/_proxies.py"], ["tests/pruning/test_proxies.py"]),
    "pruning/_search": (
        ["ttmpd/pruning/_search.py"],
        ["tests/pruning/test_search_steps.py", "tests/pruning/test_search.py"],
    ),
    "profiler/_timing": (
        ["ttmpd/profiler/_timing.py"],
        ["tests/profiler/test_timing_steps.py", "tests/profiler/test_timing.py"],
    ),
    "lut/_features": (
        ["ttmpd/lut/_features.py"],
        ["tests/lut/test_feature_columns.py", "tests/lut/test_features.py"],
    ),
    "lut/_predictor": (
        ["ttmpd/lut/_predictor.py"],
        # the fast tests: test_predictor.py profiles tables and fits tree ensembles, which
        # at ~30 s a mutant does not fit a session on 2 cores
        ["tests/lut/test_predictor_parts.py", "tests/lut/test_predictor_calibration.py"],
    ),
}

KILLED = {1, 3, 24, -24, 152, 255, 36, 37, -9, -11}
EQUIVALENT_LINE = re.compile(r"^- `([^`]+)`")


@dataclass(frozen=True)
class Score:
    module: str
    mutants: int
    killed: int
    survivors: list[str]
    equivalent: int
    unchecked: int

    @property
    def score(self) -> float:
        relevant = self.mutants - self.equivalent - self.unchecked
        return self.killed / relevant if relevant else 1.0


def equivalent_names() -> set[str]:
    """Mutant names listed as equivalent (lines ``- `name` — reason``)."""
    if not EQUIVALENTS.exists():
        return set()
    lines = EQUIVALENTS.read_text().splitlines()
    return {m.group(1) for line in lines if (m := EQUIVALENT_LINE.match(line))}


def scratch_project(module: str, tests: list[str] | None = None) -> Path:
    """A fresh project dir whose mutmut config names this module and its tests only."""
    mutate, default_tests = MODULES[module]
    tests = tests or default_tests
    work = WORK / module.replace("/", "-")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    for name in ("ttmpd", "tests"):
        (work / name).symlink_to(ROOT / name)
    pyproject = (ROOT / "pyproject.toml").read_text()
    config = {
        "source_paths": ["ttmpd"],
        "only_mutate": mutate,
        "pytest_add_cli_args_test_selection": tests,
        "pytest_add_cli_args": ["-p", "no:cacheprovider"],
        "use_git_change_detection": False,
    }
    lines = ["", "[tool.mutmut]"]
    lines += [f"{key} = {json.dumps(value)}" for key, value in config.items()]
    (work / "pyproject.toml").write_text(pyproject + "\n".join(lines) + "\n")
    return work


def _mutmut(work: Path, jobs: int, names: list[str], log_mode: str = "w") -> None:
    # one thread per mutant; the scratch copy, not this checkout, must be the importable ttmpd
    paths = os.environ.get("PYTHONPATH", "").split(os.pathsep)
    pythonpath = os.pathsep.join(p for p in paths if p and Path(p).resolve() != ROOT)
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONPATH=pythonpath)
    cmd = [sys.executable, "-m", "mutmut", "run", "--max-children", str(jobs), *names]
    with (work / "mutmut.log").open(log_mode) as out:
        subprocess.run(cmd, cwd=work, env=env, stdout=out, stderr=subprocess.STDOUT, check=False)


def run_module(module: str, jobs: int, tests: list[str] | None = None) -> Path:
    work = scratch_project(module, tests)
    _mutmut(work, jobs, [])
    return work


def recheck_survivors(module: str, jobs: int) -> Path:
    """Run the last run's surviving mutants again against the current tests.

    Only tests in the files of that run count: mutmut resets every verdict when the list of
    test files changes, so a new test file needs a fresh run. mutmut maps only *new* test
    names to the functions they reach: a check added to an existing test reaches a function
    that test did not reach before only under a new name."""
    work = WORK / module.replace("/", "-")
    survivors = read_score(module, work, set()).survivors
    if survivors:
        _mutmut(work, jobs, survivors, log_mode="a")
    return work


def read_score(module: str, work: Path, equivalents: set[str]) -> Score:
    codes: dict[str, int | None] = {}
    for meta in (work / "mutants" / "ttmpd").rglob("*.meta"):
        codes.update(json.loads(meta.read_text())["exit_code_by_key"])
    if not codes:
        raise SystemExit(f"{module}: no mutants were recorded; see {work / 'mutmut.log'}")
    unchecked = sum(code is None for code in codes.values())  # an interrupted run
    # an equivalent mutant leaves the score whatever its verdict (a timeout under load, say)
    equivalent = sum(n in equivalents and c is not None for n, c in codes.items())
    mine = {n: c for n, c in codes.items() if n not in equivalents and c is not None}
    killed = sum(c in KILLED for c in mine.values())
    survivors = sorted(n for n, c in mine.items() if c not in KILLED)
    return Score(module, len(codes), killed, survivors, equivalent, unchecked)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("modules", nargs="*", help=f"any of: {', '.join(MODULES)} (default: all)")
    parser.add_argument("--jobs", type=int, default=2, help="mutants run in parallel")
    parser.add_argument(
        "--reuse", action="store_true", help="report the last run's results without rerunning"
    )
    parser.add_argument(
        "--recheck", action="store_true", help="rerun only the last run's survivors (new tests)"
    )
    parser.add_argument("--survivors", action="store_true", help="list surviving mutant names")
    parser.add_argument(
        "--tests",
        nargs="+",
        help="test files to use instead of the module's (fewer tests: a lower bound, faster)",
    )
    args = parser.parse_args(argv)
    modules = args.modules or list(MODULES)
    unknown = sorted(set(modules) - set(MODULES))
    if unknown:
        parser.error(f"unknown module {', '.join(unknown)}; choose from: {', '.join(MODULES)}")
    equivalents = equivalent_names()
    scores = []
    for module in modules:
        if args.reuse:
            work = WORK / module.replace("/", "-")
        elif args.recheck:
            work = recheck_survivors(module, args.jobs)
        else:
            work = run_module(module, args.jobs, args.tests)
        scores.append(read_score(module, work, equivalents))
    header = ("module", "mutants", "killed", "survived", "equivalent", "unchecked", "score")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for s in scores:
        row = (s.module, s.mutants, s.killed, len(s.survivors), s.equivalent, s.unchecked)
        print("| " + " | ".join(map(str, row)) + f" | {s.score:.1%} |")
    if args.survivors:
        for s in scores:
            for name in s.survivors:
                print(name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
