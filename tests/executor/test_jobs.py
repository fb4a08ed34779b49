"""Jobs, the local executor and the journal (no Ray needed)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from ttmpd.errors import ExecutorError, InputError
from ttmpd.executor import (
    Job,
    JobJournal,
    LocalExecutor,
    Resources,
    Step,
    StepSpan,
    make_executor,
    peak_concurrency,
    run_jobs,
)


def _double(x):
    return 2 * x


def _add(previous, x):
    return previous + x


def _fail_on_three(x):
    if x == 3:
        raise ValueError("three is bad")
    return x


TWO_STEPS = (Step(_double, name="double"), Step(_add, name="add"))


def _jobs(values, steps=TWO_STEPS):
    return [Job(f"j{v}", tuple(steps), (v,)) for v in values]


def test_later_steps_get_the_previous_result_then_the_args():
    record = run_jobs(LocalExecutor(), _jobs([1, 5]))
    assert record.values == {"j1": 3, "j5": 15}  # 2x + x
    assert [(s.job, s.step) for s in record.spans] == [
        ("j1", "double"), ("j1", "add"), ("j5", "double"), ("j5", "add"),
    ]  # fmt: skip
    assert all(s.end_s >= s.start_s for s in record.spans)


def test_a_failing_job_is_reported_after_the_others_are_journaled(tmp_path):
    journal = JobJournal(tmp_path / "run.journal", {"run": 1})
    jobs = _jobs([1, 3, 4], steps=(Step(_fail_on_three),))
    with pytest.raises(ExecutorError, match=r"1 of 3 jobs failed \(j3: ValueError: three is bad"):
        run_jobs(LocalExecutor(), jobs, journal)
    assert journal.load() == {"j1": 1, "j4": 4}


def test_a_rerun_skips_journaled_jobs(tmp_path):
    calls = []

    def counted(x):
        calls.append(x)
        return x

    journal = JobJournal(tmp_path / "run.journal", {"run": 1})
    jobs = [Job(f"j{v}", (Step(counted),), (v,)) for v in (1, 2, 3)]
    run_jobs(LocalExecutor(), jobs[:2], journal)
    record = run_jobs(LocalExecutor(), jobs, journal)
    assert calls == [1, 2, 3] and record.resumed == 2
    assert list(record.values) == ["j1", "j2", "j3"]


def test_a_line_cut_by_a_kill_is_ignored_and_overwritten(tmp_path):
    journal = JobJournal(tmp_path / "run.journal", {"run": 1})
    journal.append("a", 1)
    with open(journal.path, "a") as fh:
        fh.write('{"key": "b", "val')  # killed mid-write
    assert journal.load() == {"a": 1}
    journal.append("c", 3)
    assert journal.load() == {"a": 1, "c": 3}


def test_the_journal_of_another_run_is_refused(tmp_path):
    JobJournal(tmp_path / "run.journal", {"seed": 0}).append("a", 1)
    with pytest.raises(InputError, match=r"journal of another run .*differs in seed"):
        JobJournal(tmp_path / "run.journal", {"seed": 1}).load()


def test_peak_concurrency_counts_overlaps_only():
    def span(a, b):
        return StepSpan("j", "s", a, b, "h", 1)

    assert peak_concurrency([span(0, 1), span(1, 2), span(2, 3)]) == 1  # touching
    assert peak_concurrency([span(0, 2), span(1, 3), span(1.5, 1.7)]) == 3
    assert peak_concurrency([]) == 0


def test_bad_jobs_and_names_are_refused():
    with pytest.raises(InputError, match="no steps"):
        Job("empty", ())
    with pytest.raises(InputError, match="unique"):
        run_jobs(LocalExecutor(), _jobs([1, 1]))
    with pytest.raises(InputError, match=">= 0"):
        Resources(cpus=-1)
    with pytest.raises(InputError, match="unknown executor 'slurm'; choose one of local, ray"):
        make_executor("slurm")


def test_importing_ttmpd_does_not_import_ray():
    code = (
        "import sys, ttmpd, ttmpd.cli, ttmpd.executor, ttmpd.pruning, ttmpd.lut\n"
        "from ttmpd.cli import build_parser\n"
        "build_parser()\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] == 'ray')))\n"
    )
    done = subprocess.run([sys.executable, "-c", "import json\n" + code], capture_output=True,
                          text=True, check=True)  # fmt: skip
    assert json.loads(done.stdout) == []


def test_without_ray_the_ray_executor_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError
    with pytest.raises(ExecutorError, match=r"^Ray is not installed; .*pip install 'ttmpd\[ray\]'"):
        list(make_executor("ray").run(_jobs([1])))
