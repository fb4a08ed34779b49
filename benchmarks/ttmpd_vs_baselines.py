"""TT-MPD against the pruning baselines: accuracy, measured latency, time-to-accuracy.

Base model: the shipped ResNet-20 (MNIST source split), or with ``--model vit`` the shipped
``vit_mnist`` (heads and MLP widths prunable; ``--embedding`` adds the embedding width, which
budgets below about 0.5 need). A *run* is one backend, corruption
(severity 5), seed and budget. Per run, the MNIST test split (4,000 images) is corrupted with
that seed; 512 seeded random images are the unlabeled pruning + fine-tuning set (the searches
use the first 128), the other 3,488, with labels, measure accuracy. Per backend, one LUT
(channel step 8, 1 thread) and one predictor calibrated as ``ttmpd prune`` does it (the
model and 6 random prunes, median of 3 interleaved rounds) serve every method.

Two sets, never mixed (``--set``):

========= ============================================ ==========
set       corruptions                                  seeds
========= ============================================ ==========
tuning    motion_blur, impulse_noise                   0
held-out  shot_noise, zoom_blur, shear                 1, 2, 3
========= ============================================ ==========

The search defaults (AccuracyModel coefficients, proxy images, staircase step) were chosen on
the tuning set. The held-out corruptions are ones no benchmark or design note of the project
had pruned on before this protocol: one noise, one blur, one geometric.

Budgets are fractions of the *measured* original latency (``search_budget`` maps them to the
predictor's scale). Methods, each pruning to the same budget on the same images:

=============== =========================================================================
method          prune
=============== =========================================================================
ttmpd           score every staircase step once, multiple-choice knapsack, refine; then
                ``ttmpd run``'s budget check: the prune measured beside the original,
                searched again on a miss (at most 2 more searches; ``searches``, and
                ``check_fractions``: what each measured), all of it in its prune time
                (``check_s``: the check's measurements, which stop once the prune is
                clearly inside or outside the budget band)
halp            HALP: BN Taylor saliency, latency-saliency knapsack, 5 rounds interleaved
                with 10 fine-tuning steps each (counted in its prune time)
eagleeye        24 random layer-wise ratio sets, adaptive BN, best agreement
netadapt        6 iterations, every group's candidate short-term fine-tuned (20 steps)
tp-magnitude    torch-pruning's default GroupMagnitudeImportance (L2), one uniform ratio
ttmpd-gradual   (only when asked for in ``--methods``; never a rival) ttmpd in 3 rounds with
                10 distillation steps between them
ttmpd-long      (only when asked for; never a rival) ttmpd's own prune of the run, fine-tuned
                on a 4x longer schedule (40 epochs, accuracy also at 20 and 40)
online-teacher  the prune of this run's most accurate in-budget rival above, fine-tuned with
                the teacher run at every step instead of cached outputs (its prune time
                is that rival's)
=============== =========================================================================

Every method then gets the same fine-tuning: distillation ``kd:0.9,ce:0.1`` on pseudo labels,
10 epochs over the 512 images, SGD lr 0.01, batch 64, cosine over the 10 epochs, BN
statistics re-estimated on the 512 images before each evaluation and at the end (``ttmpd
run``'s ``adapt_bn``); accuracy is taken after 0 (the prune alone), 1, 2, 5 and 10 epochs of
that one schedule. ``time_e<k>_s`` is the prune time plus teacher caching plus the training
time of the first k epochs plus the BN pass at k (wall seconds; evaluation not counted).
``--lr``, ``--warmup-epochs`` and ``--no-adapt-bn`` change that fine-tune for every method
(tuning runs).

The calibration and the original's measured latency are saved with the models on a
backend's first run and reused by every later run of the same ``--name``: a method rerun
alone then searches exactly the budgets its rivals searched.

Latency: each result is measured once after its fine-tune (``measured_once_ms``); when a
backend's runs are done, every result of that backend is measured again beside the original
(``measure_beside``: 3 paired measurements, the two models sample by sample in alternation,
so a slowdown of the shared host scales both); ``ratio`` is the median per-pair fraction of
the original, ``measured_ms`` that fraction of the pair's ``original_ms``. The
re-measurement runs in a spawned process that trained nothing and loads only the saved
files, as a deployment does (``--remeasure-in fresh``, the default since 2026-12-03;
``run``: this process, after its fine-tunes, as every run before then); ``--remeasure``
judges a name's saved results again.
The original is then paired against a copy of itself 3 times: the ratio's noise floor,
``noise_floor_pct`` in the metadata per backend (0 is a quiet host).
``within_budget``: ratio <= budget · 1.02, the same rule for every method. Pruned models
are saved under ``results/<name>_models/`` so an interrupted run loses nothing: a re-run
skips the rows the ``.partial.csv`` holds.

Summary, per run: the rival is the most accurate in-budget method other than ttmpd (at 10
epochs). ttmpd *reaches* it when its accuracy after some k in {0, 1, 2, 5, 10} epochs is at
least the rival's minus 0.5 pp; ``time_ratio`` is ttmpd's time to that point over the
rival's prune + 10-epoch time. A run meets the target when ``time_ratio <= 0.6``, or when
ttmpd beats the rival by >= 1 pp in no more time. With ``ttmpd-long`` rows, the same
questions are asked again with the checkpoints of both of ttmpd's schedules
(``time_ratio_long``, ``target_met_long``): the time-to-accuracy of a method whose prune is
cheap enough to spend the saving on fine-tuning. The 4x length was fixed before any run
with it was looked at, not tuned. Per cell (backend, budget): mean accuracy
difference with a 95% t-interval over the runs, median time ratio, runs meeting the target.

    python benchmarks/ttmpd_vs_baselines.py --set held-out [--backends onnxruntime,torch-cpu]
        [--budgets 0.3,0.4,0.5,0.7] [--methods ...] [--seeds 1,2] [--corruptions ...]
        [--name ttmpd_vs_baselines_heldout] [--model resnet20|vit [--embedding]]
        [--defer-remeasure] [--remeasure] [--remeasure-in fresh|run]

``--seeds``/``--corruptions`` restrict a run (and its summary) to part of the set, e.g. to
report the seeds an interrupted protocol finished.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import sys
import time
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from _process import isolated
from _report import RESULTS, markdown_table, write_results
from scipy import stats
from tqdm.auto import tqdm

from ttmpd._figures import pyplot, save_figure
from ttmpd.base import reference_checkpoint_path, to_model_input
from ttmpd.data import corrupt, load_mnist
from ttmpd.errors import InputError
from ttmpd.lut import LatencyPredictor, load_predictor, profile_model, save_predictor
from ttmpd.models import load_checkpoint
from ttmpd.pipeline import RunConfig, distill_student, search_budget
from ttmpd.profiler import BackendConfig, GridConfig, get_backend
from ttmpd.pruning import (
    IMPORTANCES,
    MODEL_TIMING,
    BudgetSearch,
    FreshMeasurer,
    GroupOptions,
    SearchConfig,
    calibrate_predictor,
    checked_prune,
    measure_beside,
    pareto_front,
    plot_pareto,
)
from ttmpd.workflow import split_mask

LUTS = Path(__file__).parent / "luts"
#: --model: the shipped checkpoint (in ttmpd/models) and the name its LUTs and results carry
MODELS = {"resnet20": "resnet20_mnist", "vit": "vit_mnist"}
LABELS = {"resnet20": "ResNet-20", "vit": "ViT (vit_mnist)"}
SETS = {
    "tuning": (("motion_blur", "impulse_noise"), (0,)),
    "held-out": (("shot_noise", "zoom_blur", "shear"), (1, 2, 3)),
}
PRUNERS = ("ttmpd", "halp", "eagleeye", "netadapt", "tp-magnitude")
ONLINE = "online-teacher"
RIVALS = (*PRUNERS[1:], ONLINE)
#: ttmpd variants that may run beside (``--methods``), never counted as rivals
LONG = "ttmpd-long"
VARIANTS = ("ttmpd-gradual", LONG)
EPOCHS_AT = (1, 2, 5, 10)
#: the ttmpd-long schedule: its epochs and the checkpoints past :data:`EPOCHS_AT`
LONG_EPOCHS = 40
LONG_AT = (20, 40)
CHECKPOINTS = (0, *EPOCHS_AT, *LONG_AT)
TOLERANCE = 1.02
KEY = ["backend", "corruption", "seed", "budget", "method"]
COLUMNS = (*KEY, "original_acc", "original_ms", "accuracy",
           *(f"acc_e{k}" for k in CHECKPOINTS), *(f"time_e{k}_s" for k in CHECKPOINTS),
           "measured_once_ms", "measured_ms", "ratio", "within_budget", "predicted_ratio",
           "prune_s", "prune_cpu_s", "searches", "check_s", "check_fractions", "finetune_s",
           "total_s", "rival", "remeasured", "status")  # fmt: skip


def append_row(path: Path, row: dict) -> None:
    """Append ``row`` to the partial CSV in :data:`COLUMNS` order (missing values empty); a
    CSV written with fewer columns is first rewritten with all of them."""
    if path.exists() and list(pd.read_csv(path, nrows=0).columns) != list(COLUMNS):
        tmp = path.with_suffix(".tmp")
        pd.read_csv(path).reindex(columns=list(COLUMNS)).to_csv(tmp, index=False)
        tmp.replace(path)
    frame = pd.DataFrame([row]).reindex(columns=list(COLUMNS))
    frame.to_csv(path, mode="a", index=False, header=not path.exists())


def key_name(row) -> str:
    return "-".join(str(row[k]) for k in KEY)


def measure_students(files: list[Path], model, x, backend) -> tuple[list, list[float]]:
    """Each saved student of ``files`` beside the original
    (:func:`~ttmpd.pruning.measure_beside`: 3 paired measurements, the two models sample by
    sample in alternation): its ``(original_ms, measured_ms)``; and the noise floor of these
    figures, the original paired against a copy of itself 3 times (``copy / original - 1``,
    in %)."""
    pairs = []
    for file in tqdm(files, desc=f"remeasure {backend.name}", unit="model"):
        student = torch.load(file, weights_only=False)
        pairs.append(measure_beside(model, student, x, backend))
    floor = []
    for _ in range(3):
        original_ms, copy_ms = measure_beside(model, copy.deepcopy(model), x, backend)
        floor.append(100 * (copy_ms / original_ms - 1))
    return pairs, floor


def judge_job(model_file: str, backend_name: str, files: list[Path]) -> tuple[list, list[float]]:
    """:func:`measure_students` from nothing but the files: the shipped checkpoint and the
    backend at 1 thread (torch too), as a deployment process that trained nothing loads them.
    Run by :func:`~_process.isolated` for ``--remeasure-in fresh``."""
    torch.set_num_threads(1)
    model, _, _, backend, x = protocol_model(model_file, backend_name)
    return measure_students(files, model, x, backend)


def remeasure(path: Path, models: Path, backend_name: str, measure, where: str = "run") -> None:
    """Re-measure every result of ``backend_name`` with ``measure(files)`` (one of
    :func:`measure_students` or :func:`judge_job`, bound to the model and backend) and
    rewrite their rows of the partial CSV (module docstring); the floor and ``where`` the
    measurement ran (``fresh`` or ``run``) go to ``<models>/<backend>.floor.json``."""
    frame = pd.read_csv(path)
    rows = frame.index[(frame["backend"] == backend_name) & (frame["status"] == "ok")]
    pairs, floor = measure([models / f"{key_name(frame.loc[i])}.pt" for i in rows])
    for i, (original_ms, measured) in zip(rows, pairs, strict=True):
        frame.loc[i, ["original_ms", "measured_ms"]] = [original_ms, measured]
        frame.loc[i, "ratio"] = measured / original_ms
        frame.loc[i, "within_budget"] = bool(
            measured / original_ms <= frame.loc[i, "budget"] * TOLERANCE
        )
        frame.loc[i, "remeasured"] = True
    floor_file = models / f"{backend_name}.floor.json"
    floor_file.write_text(json.dumps({"floor_pct": floor, "measured_in": where}))
    tmp = path.with_suffix(".tmp")
    frame.to_csv(tmp, index=False)
    tmp.replace(path)


def noise_floors(models: Path, backends: list[str]) -> dict:
    """Per backend, the re-measurement's noise floor (:func:`remeasure`): the original's
    measured fraction of itself, minus 1, in % (3 paired measurements)."""
    files = {b: models / f"{b}.floor.json" for b in backends}
    return {b: json.loads(f.read_text())["floor_pct"] for b, f in files.items() if f.exists()}


def remeasured_in(models: Path, backends: list[str]) -> dict:
    """Per backend, where its rows were last re-measured: ``fresh`` (a spawned process that
    trained nothing) or ``run`` (the benchmark's own process; files written before
    ``--remeasure-in`` existed say nothing and count as ``run``)."""
    files = {b: models / f"{b}.floor.json" for b in backends}
    return {
        b: json.loads(f.read_text()).get("measured_in", "run")
        for b, f in files.items()
        if f.exists()
    }


def split(images: np.ndarray, labels: np.ndarray, n: int, seed: int):
    pick = split_mask(len(images), n, seed)
    return images[pick], images[~pick], labels[~pick]


def accuracy(model, images, labels, norm) -> float:
    with torch.no_grad():
        logits = torch.cat([model(b) for b in to_model_input(images, norm).split(512)])
    return float((logits.argmax(1).numpy() == labels).mean())


def finetune(model, pruned, tune, held, labels, norm, online: bool, epochs: int = 10,
             recipe: dict | None = None) -> tuple:  # fmt: skip
    """The shared distillation (10 epochs, or ``epochs``; ``recipe``: DistillConfig fields
    that differ from ``ttmpd run``'s, such as ``lr``); accuracy and cumulative time at each
    checkpoint of :data:`CHECKPOINTS` it reaches."""
    config = RunConfig(model="-", data="-", backend="fake", budget=0.5, online_teacher=online,
                       epochs=epochs, progress=False).distill_config()  # fmt: skip
    config = dataclasses.replace(config, **(recipe or {}))
    to_input = partial(to_model_input, normalization=norm)
    at = [k for k in CHECKPOINTS[1:] if k <= epochs]
    start = time.perf_counter()
    student, figures = distill_student(
        model, copy.deepcopy(pruned), tune, to_input, config,
        eval_data=(held, labels), eval_epochs=set(at),
    )  # fmt: skip
    wall = time.perf_counter() - start
    history = figures["history"]
    seconds = figures["cache_s"] + history["seconds"].cumsum()
    curve = {"acc_e0": figures["accuracy_before"], "time_e0_s": 0.0}
    # stopping after epoch k costs its BN re-estimation too (adapt_s; 0 when off)
    adapt = history["adapt_s"] if "adapt_s" in history else 0.0 * seconds
    for k in at:
        curve[f"acc_e{k}"] = float(history["accuracy"].iloc[k - 1])
        curve[f"time_e{k}_s"] = float(seconds.iloc[k - 1] + adapt.iloc[k - 1])
    train_s = float(seconds.iloc[-1] + adapt.iloc[-1])
    return student, curve, train_s, wall


def recipe(args) -> dict:
    """The fine-tune settings ``--lr`` / ``--warmup-epochs`` override (empty: ttmpd run's)."""
    given = {"lr": args.lr, "warmup_epochs": args.warmup_epochs}
    if args.no_adapt_bn:
        given["adapt_bn"] = False
    return {k: v for k, v in given.items() if v is not None}


def finetune_config(args):
    """The 10-epoch DistillConfig every method's rows were fine-tuned with (for the record)."""
    config = RunConfig(model="-", data="-", backend="fake", budget=0.5,
                       progress=False).distill_config()  # fmt: skip
    return dataclasses.replace(config, **recipe(args))


def best_rival(rows: list[dict]) -> dict | None:
    """The most accurate row within budget (by the measurement right after its fine-tune)."""
    ok = [r for r in rows if r.get("status") == "ok" and r["method"] in RIVALS
          and r["measured_once_ms"] <= r["budget"] * r["original_ms"] * TOLERANCE]  # fmt: skip
    return max(ok, key=lambda r: r["accuracy"]) if ok else None


def search_config(method: str, fraction: float, seed: int, groups: GroupOptions) -> SearchConfig:
    """The search of ``method``, or of ``method@importance``: the method with another
    within-group order (:data:`ttmpd.pruning.IMPORTANCES`), a variant for the tuning set."""
    name, _, order = method.partition("@")
    extra = {"importance": order} if order else {}
    return SearchConfig(budget=fraction, method=name, seed=seed, progress=False, groups=groups,
                        **extra)  # fmt: skip


def ttmpd_solve(config: SearchConfig) -> str:
    """How ``config``'s ``ttmpd`` search solves its knapsack, for the results' metadata
    (docs/design/search.md: "tightened", then relinearized around its own answer)."""
    rounds = config.relinearize_rounds
    return f"tightened, relinearized ({rounds} rounds)" if rounds else "tightened"


#: ttmpd's measured budget check, as ``ttmpd run`` does it (its re-searches at most)
BUDGET_CHECKS = RunConfig(model="-", data="-", backend="fake", budget=0.5).budget_checks


def prune_method(method: str, fraction: float, budget: float, seed: int, groups: GroupOptions,
                 model, x, predictor, calib, backend, first_aim: float = 0.0,
                 check_in: str = "run") -> tuple:  # fmt: skip
    """``(PruneResult, attempts)`` of ``method``: one dict per search, in order, with its
    ``search_budget`` and ``search_s`` (the search's own seconds; the rest of ttmpd's prune
    time is its budget check's measurements) and, for ttmpd, the ``measured_fraction`` of
    the original its check read (:class:`~ttmpd.pruning.CheckedPrune`). ttmpd (and its
    ``@`` variants) prunes as ``ttmpd run`` does: the search (its first at
    ``(1 − first_aim) · fraction``), then :func:`~ttmpd.pruning.checked_prune` measures the
    prune beside the original and searches again on a miss (every measurement counted in
    its prune time; a re-search reuses the first search's scored candidates,
    :class:`~ttmpd.pruning.BudgetSearch`). ``check_in="fresh"``: the check measures in a
    worker process spawned as the prune starts (:class:`~ttmpd.pruning.FreshMeasurer`, its
    start-up counted in the prune time); ``run``: in this process. The rivals search once on
    predicted latency, as published."""
    search = BudgetSearch(model, x, predictor, calib, search_config(method, fraction, seed, groups))
    if method.partition("@")[0] != "ttmpd":
        result = search(fraction)
        return result, [{"search_budget": fraction, "search_s": result.search_s}]
    if check_in == "fresh":
        with FreshMeasurer(model, x, backend) as measure:
            checked = checked_prune(search, measure, budget, fraction, BUDGET_CHECKS,
                                    first_aim=first_aim)  # fmt: skip
    else:
        checked = checked_prune(search, partial(measure_beside, model, example_input=x,
                                                backend=backend), budget, fraction,
                                BUDGET_CHECKS, first_aim=first_aim)  # fmt: skip
    return checked.result, checked.attempts


def check_fractions(attempts: list[dict]) -> str:
    """The measured fractions of the original of a check's searches, in order,
    ``;``-separated (``0.5213;0.4871``: the first search missed over the band, the second
    landed in it)."""
    return ";".join(f"{a['measured_fraction']:.4f}" for a in attempts)


#: Calibration measurements at most, while the worst leave-one-out error exceeds ±10%
CALIBRATION_TRIES = 3


def backend_predictor(table, lut: Path, model, x, backend, models: Path, backend_name: str):
    """``(predictor, original_ms)`` of a backend: calibrated on the model and 6 random prunes,
    with the original's measured latency that maps budgets to the predictor's scale. A
    calibration whose worst leave-one-out error exceeds 10% is measured again (at most
    :data:`CALIBRATION_TRIES` in all, ``calibrate_predictor(tries=...)``); the steadiest is
    kept. The
    first run of a results name saves both beside its models (``<backend>.predictor.json``,
    ``<backend>.budget.json``); later runs of that name load them, so rows added later (a
    method rerun after a code change) search the same budgets as the rows already there.
    A fresh calibration would move every search budget with the host's load of the day."""
    predictor_file = models / f"{backend_name}.predictor.json"
    budget_file = models / f"{backend_name}.budget.json"
    if predictor_file.exists() and budget_file.exists():
        predictor, _ = load_predictor(predictor_file, lut)
        return predictor, float(json.loads(budget_file.read_text())["original_ms"])
    predictor = LatencyPredictor().fit(table)
    original_ms = calibrate_predictor(predictor, model, x, backend, 6,
                                      tries=CALIBRATION_TRIES)[0]  # fmt: skip
    models.mkdir(parents=True, exist_ok=True)
    save_predictor(predictor, predictor_file, table, str(lut))
    budget = {"original_ms": original_ms, "loo_worst_pct": 100 * predictor.calibration_loo_worst}
    budget_file.write_text(json.dumps(budget))
    return predictor, original_ms


def protocol_model(model_file: str, backend_name: str) -> tuple:
    """``(model, normalization, MNIST test split, backend, example input)``: the shipped
    checkpoint and the backend at 1 thread."""
    checkpoint = load_checkpoint(reference_checkpoint_path().with_name(f"{model_file}.pt"))
    model, norm = checkpoint.model.eval(), checkpoint.normalization
    test = load_mnist("test")
    backend = get_backend(backend_name, BackendConfig(threads=1))
    return model, norm, test, backend, to_model_input(test.images[:1], norm)


def protocol_setup(model_file: str, backend_name: str) -> tuple:
    """``(model, normalization, MNIST test split, backend, example input, LUT path, table)``:
    :func:`protocol_model` and the backend's LUT (channel step 8) built or resumed under
    :data:`LUTS`."""
    model, norm, test, backend, x = protocol_model(model_file, backend_name)
    lut = LUTS / f"{model_file}-{backend_name}.parquet"
    table = profile_model(model, x, backend, lut, grid=GridConfig(channel_step=8),
                          resume=True, progress=False).table  # fmt: skip
    return model, norm, test, backend, x, lut, table


def run_backend(args, backend_name: str, partial_csv: Path, models: Path) -> None:
    done = pd.read_csv(partial_csv) if partial_csv.exists() else pd.DataFrame()
    have = {} if done.empty else {key_name(r): r for r in done.to_dict("records")}
    model, norm, test, backend, x, lut, table = protocol_setup(args.model_file, backend_name)
    predictor, original_ms = backend_predictor(table, lut, model, x, backend, models, backend_name)
    predicted_ms = predictor.predict_model(model, x).total_ms
    corruptions, seeds = args.corruptions, args.seeds
    added = False
    for seed in seeds:
        for corruption in corruptions:
            images = corrupt(test.images, corruption, args.severity, seed=seed)
            tune, held, labels = split(images, test.labels, 512, seed)
            calib = to_model_input(tune[:128], norm)
            original_acc = accuracy(model, held, labels, norm)
            for budget in args.budgets:
                try:
                    fraction = search_budget(budget, original_ms, predicted_ms)
                except InputError as exc:  # the calibration puts the budget above 1
                    print(f"{backend_name} budget {budget}: {exc}", file=sys.stderr)
                    continue
                base = {"backend": backend_name, "corruption": corruption, "seed": seed,
                        "budget": budget, "original_acc": original_acc,
                        "original_ms": original_ms}  # fmt: skip
                rows = []
                for method in [*args.methods, ONLINE]:
                    row = {**base, "method": method}
                    name = key_name(row)
                    if name in have:
                        rows.append(have[name])
                        continue
                    if method == LONG:
                        ours = next((r for r in rows if r["method"] == "ttmpd"
                                     and r.get("status") == "ok"), None)  # fmt: skip
                        if ours is None:
                            continue
                        pruned = torch.load(models / f"{key_name(ours)}.pruned.pt",
                                            weights_only=False)  # fmt: skip
                        prune_s, prune_cpu_s = ours["prune_s"], ours["prune_cpu_s"]
                        row["searches"] = ours.get("searches")
                        predicted_ratio = ours["predicted_ratio"]
                    elif method == ONLINE:
                        rival = best_rival(rows)
                        if rival is None:
                            continue
                        pruned = torch.load(models / f"{key_name(rival)}.pruned.pt",
                                            weights_only=False)  # fmt: skip
                        prune_s, prune_cpu_s = rival["prune_s"], rival["prune_cpu_s"]
                        row["rival"] = rival["method"]
                        predicted_ratio = rival["predicted_ratio"]
                    else:
                        wall, cpu = time.perf_counter(), time.process_time()
                        try:
                            result, attempts = prune_method(
                                method, fraction, budget, seed, args.groups, model, x,
                                predictor, calib, backend, args.first_aim,
                                args.check_in)  # fmt: skip
                        except InputError as exc:  # a budget below what pruning reaches
                            print(f"{name}: {exc}", file=sys.stderr)
                            row.update(within_budget=False, status=str(exc))
                            append_row(partial_csv, row)
                            rows.append(row)
                            continue
                        prune_s = time.perf_counter() - wall
                        prune_cpu_s = time.process_time() - cpu
                        pruned = result.model
                        row["searches"] = len(attempts)
                        if method.partition("@")[0] == "ttmpd":
                            row["check_s"] = prune_s - sum(a["search_s"] for a in attempts)
                            row["check_fractions"] = check_fractions(attempts)
                        predicted_ratio = result.predicted_latency_ms / predicted_ms
                        models.mkdir(parents=True, exist_ok=True)
                        torch.save(pruned, models / f"{name}.pruned.pt")
                    epochs = LONG_EPOCHS if method == LONG else 10
                    student, curve, train_s, _ = finetune(model, pruned, tune, held, labels,
                                                          norm, method == ONLINE, epochs,
                                                          recipe(args))  # fmt: skip
                    torch.save(student, models / f"{name}.pt")
                    if method == LONG:  # ttmpd's structure: its latency, not a new measurement
                        row.update({k: ours[k] for k in ("measured_once_ms", "measured_ms",
                                                         "ratio", "within_budget", "remeasured",
                                                         "original_ms")})  # fmt: skip
                    else:
                        measured = backend.measure_model(student, x, MODEL_TIMING).median_ms
                        row.update(
                            measured_once_ms=measured,
                            measured_ms=measured,
                            ratio=measured / original_ms,
                            remeasured=False,
                            within_budget=measured <= budget * original_ms * TOLERANCE,
                        )
                        added = True
                    row.update(curve, accuracy=curve[f"acc_e{epochs}"],
                               predicted_ratio=predicted_ratio, prune_s=prune_s,
                               prune_cpu_s=prune_cpu_s, finetune_s=train_s,
                               total_s=prune_s + train_s, status="ok")  # fmt: skip
                    for k in CHECKPOINTS:
                        if f"time_e{k}_s" in row:
                            row[f"time_e{k}_s"] += prune_s
                    print(f"{name}: acc {100 * row['accuracy']:.2f}% ratio {row['ratio']:.3f} "
                          f"prune {prune_s:.1f}s total {row['total_s']:.1f}s",
                          file=sys.stderr)  # fmt: skip
                    append_row(partial_csv, row)
                    rows.append(row)
    frame = pd.read_csv(partial_csv)
    mine = frame[(frame["backend"] == backend_name) & (frame["status"] == "ok")]
    if args.defer_remeasure:
        return
    stale = len(mine) and not mine["remeasured"].astype(bool).all()
    if added or stale or (args.remeasure and len(mine)):
        if args.remeasure_in == "fresh":
            measure = partial(isolated, judge_job, args.model_file, backend_name)
        else:
            measure = partial(measure_students, model=model, x=x, backend=backend)
        remeasure(partial_csv, models, backend_name, measure, args.remeasure_in)


def mean_ci(values: pd.Series) -> tuple[float, float]:
    """Mean and the half-width of its 95% t-interval (nan with fewer than 2 values)."""
    v = values.dropna().to_numpy(dtype=float)
    if len(v) < 2:
        return (float(v.mean()) if len(v) else np.nan), np.nan
    return float(v.mean()), float(stats.t.ppf(0.975, len(v) - 1) * v.std(ddof=1) / np.sqrt(len(v)))


def reach_time(schedules: list[pd.Series], target: float) -> tuple[float, float]:
    """The earliest (seconds, epochs) at which any of ``schedules`` (rows of one prune, each
    with its checkpoints) reaches accuracy ``target``; (nan, nan) when none does."""
    hits = [(row[f"time_e{k}_s"], k) for row in schedules for k in CHECKPOINTS
            if pd.notna(row.get(f"acc_e{k}")) and row[f"acc_e{k}"] >= target]  # fmt: skip
    return min(hits) if hits else (np.nan, np.nan)


def per_run(frame: pd.DataFrame) -> pd.DataFrame:
    """ttmpd against its run's most accurate in-budget rival (module docstring)."""
    out = []
    for keys, run in frame.groupby(["backend", "corruption", "seed", "budget"]):
        ours = run[run["method"] == "ttmpd"]
        rivals = run[run["method"].isin(RIVALS) & run["within_budget"]]
        if ours.empty or rivals.empty:
            continue
        ours, rival = ours.iloc[0], rivals.sort_values("accuracy", ascending=False).iloc[0]
        target = rival["accuracy"] - 0.005
        reach_s, reach_k = reach_time([ours], target)
        ratio = reach_s / rival["total_s"]
        beats = (ours["accuracy"] >= rival["accuracy"] + 0.01) and ours["total_s"] <= rival[
            "total_s"
        ]
        row = {**dict(zip(["backend", "corruption", "seed", "budget"], keys, strict=True)),
               "rival": rival["method"], "ttmpd_acc": 100 * ours["accuracy"],
               "rival_acc": 100 * rival["accuracy"],
               "acc_diff_pp": 100 * (ours["accuracy"] - rival["accuracy"]),
               "reach_epochs": reach_k, "ttmpd_reach_s": reach_s,
               "rival_total_s": rival["total_s"], "time_ratio": ratio,
               "ttmpd_within_budget": bool(ours["within_budget"]),
               # the same budget rule as the rivals: a prune over budget meets nothing
               "target_met": bool(ours["within_budget"] and ((ratio <= 0.6) or beats))}  # fmt: skip
        long = run[run["method"] == LONG]
        if len(long):
            long = long.iloc[0]
            long_s, long_k = reach_time([ours, long], target)
            long_ratio = long_s / rival["total_s"]
            row.update(long_acc=100 * long["accuracy"], long_reach_epochs=long_k,
                       time_ratio_long=long_ratio,
                       target_met_long=bool(ours["within_budget"]
                                            and (long_ratio <= 0.6 or beats)))  # fmt: skip
        out.append(row)
    return pd.DataFrame(out)


def per_cell(runs: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for (backend, budget), cell in runs.groupby(["backend", "budget"]):
        diff, half = mean_ci(cell["acc_diff_pp"])
        rows.append({"backend": backend, "budget": budget, "runs": len(cell),
                     "rivals": ",".join(sorted(set(cell["rival"]))),
                     "acc_diff_pp": diff, "ci95_pp": half,
                     "median_time_ratio": float(cell["time_ratio"].median()),
                     "reached": int(cell["time_ratio"].notna().sum()),
                     "target_met": int(cell["target_met"].sum()),
                     "ttmpd_in_budget": int(cell["ttmpd_within_budget"].sum())})  # fmt: skip
        if "long_acc" in cell and cell["long_acc"].notna().any():
            long_diff, long_half = mean_ci(cell["long_acc"] - cell["rival_acc"])
            rows[-1].update(
                long_acc_diff_pp=long_diff,
                long_ci95_pp=long_half,
                median_time_ratio_long=float(cell["time_ratio_long"].median()),
                target_met_long=int(cell["target_met_long"].fillna(False).sum()),
            )
    return pd.DataFrame(rows)


def plot_time_to_accuracy(frame: pd.DataFrame, path: Path, title: str) -> None:
    """One panel per budget: mean accuracy against mean time at each checkpoint a method's
    runs all have (0, 1, 2, 5, 10 epochs; ttmpd-long also 20 and 40)."""
    plt = pyplot()
    budgets = sorted(frame["budget"].unique())
    fig, axes = plt.subplots(1, len(budgets), figsize=(4 * len(budgets), 3.6), squeeze=False)
    for ax, budget in zip(axes[0], budgets, strict=True):
        cell = frame[frame["budget"] == budget]
        for (method, group), marker in zip(cell.groupby("method", sort=False), "*osd^vP",
                                           strict=False):  # fmt: skip
            ks = [k for k in CHECKPOINTS if group[f"acc_e{k}"].notna().all()]
            t = [group[f"time_e{k}_s"].mean() for k in ks]
            a = [100 * group[f"acc_e{k}"].mean() for k in ks]
            ax.plot(t, a, marker=marker, ms=5, label=method)
        ax.set_xscale("log")
        ax.set_xlabel("prune + fine-tune time (s, log)")
        ax.set_title(f"budget {budget}")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("accuracy (%)")
    axes[0][-1].legend(fontsize=7)
    fig.suptitle(title)
    save_figure(fig, path)


def refused(failed: pd.DataFrame) -> list[dict]:
    """One record per (backend, budget) the search refused: the methods and runs refused
    and the search's reason (the first run's), so a missing cell says why it is missing."""
    out = []
    for (backend, budget), group in failed.groupby(["backend", "budget"]):
        out.append({"backend": backend, "budget": float(budget),
                    "methods": sorted(set(group["method"])),
                    "runs": int(group[["corruption", "seed"]].drop_duplicates().shape[0]),
                    "reason": str(group["status"].iloc[0])})  # fmt: skip
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", choices=sorted(SETS), default="held-out")
    parser.add_argument("--backends", default="onnxruntime,torch-cpu")
    parser.add_argument("--budgets", default="0.3,0.4,0.5,0.7")
    parser.add_argument("--methods", default=",".join(PRUNERS))
    parser.add_argument("--severity", type=int, default=5)
    parser.add_argument("--seeds", help="a subset of the set's seeds (default: all)")
    parser.add_argument("--corruptions", help="a subset of the set's corruptions (default: all)")
    parser.add_argument("--name", default=None, help="default: ttmpd_vs_baselines_<set>")
    parser.add_argument(
        "--note",
        default="",
        help="how the rows were made where the command does not say (backends run as "
        "concurrent processes, say); shown with the results",
    )
    parser.add_argument(
        "--defer-remeasure",
        action="store_true",
        help="leave the final re-measurement to a later run of the same name (when two "
        "processes share the host, the re-measurement must run alone)",
    )
    parser.add_argument(
        "--remeasure-in",
        choices=("fresh", "run"),
        default="fresh",
        help="where the final re-measurement runs: a spawned process that trained nothing, "
        "as a deployment loads the model (fresh), or this run's own process (run)",
    )
    parser.add_argument(
        "--check-in",
        choices=("run", "fresh"),
        default="run",
        help="where ttmpd's budget check measures: this process (run) or a worker process "
        "spawned as the prune starts (fresh; ttmpd.pruning.FreshMeasurer)",
    )
    parser.add_argument(
        "--remeasure",
        action="store_true",
        help="re-measure every row of the selected backends again (to judge saved results "
        "anew) and rewrite the summary",
    )
    parser.add_argument("--model", choices=sorted(MODELS), default="resnet20")
    parser.add_argument(
        "--lr", type=float, default=None, help="the shared fine-tune's learning rate (ttmpd run's)"
    )
    parser.add_argument(
        "--warmup-epochs",
        type=float,
        default=None,
        help="the shared fine-tune's linear warm-up, in epochs (ttmpd run's)",
    )
    parser.add_argument(
        "--no-adapt-bn",
        action="store_true",
        help="keep the BN statistics averaged during the fine-tune (ttmpd run re-estimates them)",
    )
    parser.add_argument(
        "--first-aim",
        type=float,
        default=0.0,
        help="ttmpd's first search aims this fraction under the budget (checked_prune's "
        "first_aim; a tuning knob)",
    )
    parser.add_argument(
        "--embedding",
        action="store_true",
        help="let every method prune the embedding width (GroupOptions)",
    )
    args = parser.parse_args(argv)
    args.budgets = [float(b) for b in args.budgets.split(",")]
    args.methods = args.methods.split(",")
    set_corruptions, set_seeds = SETS[args.set]
    args.corruptions = args.corruptions.split(",") if args.corruptions else list(set_corruptions)
    args.seeds = [int(v) for v in args.seeds.split(",")] if args.seeds else list(set_seeds)
    if not set(args.corruptions) <= set(set_corruptions) or not set(args.seeds) <= set(set_seeds):
        parser.error(f"--corruptions/--seeds must come from the {args.set} set: "
                     f"{', '.join(set_corruptions)}; seeds {set_seeds}")  # fmt: skip
    unknown = sorted({m.partition("@")[0] for m in args.methods} - set(PRUNERS) - set(VARIANTS))
    orders = {m.partition("@")[2] for m in args.methods} - {""} - set(IMPORTANCES.names())
    if orders:
        parser.error(f"unknown importance {sorted(orders)[0]!r} after '@'")
    if unknown:
        parser.error(f"unknown method {unknown[0]!r}; choose from {', '.join(PRUNERS + VARIANTS)}")
    args.model_file = MODELS[args.model]
    args.groups = GroupOptions(embedding=args.embedding)
    suffix = "" if args.model == "resnet20" else f"_{args.model}"
    name = args.name or f"ttmpd_vs_baselines{suffix}_{args.set.replace('-', '')}"
    torch.set_num_threads(1)
    partial_csv = RESULTS / f"{name}.partial.csv"
    models = RESULTS / f"{name}_models"
    RESULTS.mkdir(parents=True, exist_ok=True)
    for backend_name in args.backends.split(","):
        run_backend(args, backend_name, partial_csv, models)
    frame = pd.read_csv(partial_csv)
    frame = frame[frame["seed"].isin(args.seeds) & frame["corruption"].isin(args.corruptions)]
    frame = frame[
        frame["backend"].isin(args.backends.split(",")) & frame["budget"].isin(args.budgets)
    ]
    frame["within_budget"] = frame["within_budget"].astype(bool)
    failed = frame[frame["status"] != "ok"]
    frame = frame[frame["status"] == "ok"]
    runs, cells = per_run(frame), pd.DataFrame()
    if len(runs):
        cells = per_cell(runs)
    corruptions, seeds = args.corruptions, args.seeds
    meta = {"set": args.set, "corruptions": list(corruptions), "seeds": list(seeds),
            "severity": args.severity, "finetune_samples": 512, "search_samples": 128,
            "epochs": 10, "budget_rule": f"ratio <= budget * {TOLERANCE}", "model": args.model,
            "embedding": args.embedding,
            "ttmpd_solve": ttmpd_solve(search_config("ttmpd", 0.5, 0, GroupOptions())),
            "first_aim": args.first_aim, "check_in": args.check_in,
            "note": args.note,
            "refused": refused(failed),
            "noise_floor_pct": noise_floors(models, args.backends.split(",")),
            "remeasured_in": remeasured_in(models, args.backends.split(",")),
            "finetune": dataclasses.asdict(finetune_config(args))}  # fmt: skip
    write_results(RESULTS / name, frame, **meta)
    write_results(RESULTS / f"{name}_runs", runs, **meta)
    write_results(RESULTS / f"{name}_cells", cells, **meta)
    table = []
    for (backend, method, budget), group in frame.groupby(["backend", "method", "budget"]):
        acc, half = mean_ci(100 * group["accuracy"])
        table.append({"backend": backend, "budget": budget, "method": method, "n": len(group),
                      "accuracy": acc, "ci95": half, "ratio": group["ratio"].mean(),
                      "in_budget": f"{int(group['within_budget'].sum())}/{len(group)}",
                      "prune_s": group["prune_s"].median(),
                      "total_s": group["total_s"].median()})  # fmt: skip
    table = pd.DataFrame(table)
    write_results(RESULTS / f"{name}_methods", table, **meta)
    for backend_name, group in frame.groupby("backend"):
        mean = group.groupby(["method", "budget"], as_index=False).agg(
            accuracy=("accuracy", "mean"), measured_ms=("measured_ms", "mean"))  # fmt: skip
        points = pd.concat([pd.DataFrame([{"method": "original", "budget": 1.0,
                                           "measured_ms": group["original_ms"].mean(),
                                           "accuracy": group["original_acc"].mean()}]),
                            mean], ignore_index=True)  # fmt: skip
        points["on_front"] = pareto_front(points["measured_ms"], points["accuracy"])
        title = (
            f"{LABELS[args.model]} MNIST-C {args.set} ({len(corruptions)}×{len(seeds)} runs), "
            f"{backend_name}"
        )
        plot_pareto(points, RESULTS / f"{name}_pareto_{backend_name}.png", title)
        plot_time_to_accuracy(group, RESULTS / f"{name}_time_{backend_name}.png", title)
    print(markdown_table(table))
    if len(cells):
        print()
        print(markdown_table(cells))
        met = int((cells["target_met"] > cells["runs"] / 2).sum())
        print(f"\ncells where ttmpd meets the target in most runs: {met}/{len(cells)}")
        if "target_met_long" in cells:
            long_met = int((cells["target_met_long"] > cells["runs"] / 2).sum())
            print(f"... with the {LONG_EPOCHS}-epoch schedule as well: {long_met}/{len(cells)}")
    if len(failed):
        print("\nnot run (the search refused the budget):")
        for record in meta["refused"]:
            print(
                f"- {record['backend']} budget {record['budget']} "
                f"({', '.join(record['methods'])}; {record['runs']} runs): {record['reason']}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
