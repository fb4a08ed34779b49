"""``ttmpd run``: the whole TT-MPD job as resumable stages writing into one folder.

==========  ==================================================================  ===========
stage       does                                                                writes
==========  ==================================================================  ===========
data        splits the stream: ``finetune_samples`` unlabeled images (seeded)   data/*.npz
            for pruning and fine-tuning, the rest held out for evaluation
lut         profiles the model's grid on the backend, reusing every row of a    lut.parquet
            matching table (``--lut``)
predictor   fits the latency predictor, calibrates it on the measured model     predictor.json
            and ``calibrate_variants`` random prunes
prune       searches a prune meeting the budget (``method``) on the first       prune/
            ``proxy_samples`` fine-tuning images, no measuring in the loop;
            the result is measured and searched again (``budget_checks``)
            if it misses the budget
distill     teacher pseudo labels computed once on the fine-tuning images       distill/
            (or every step with ``online_teacher``), then distillation
evaluate    held-out accuracy (labels) and agreement with the unpruned model    -
            of the original, the pruned and the final model
export      ONNX export of the final model, checked against PyTorch             model.onnx
measure     measured latency of the original and the final model; per-layer    layers.csv
            latency before and after (predictor breakdown)
report      report.md with the figures, stage times and configuration           report.md
==========  ==================================================================  ===========

Stages talk only through files, so a killed run restarts (``resume=True``) after its last
finished stage (:mod:`ttmpd.pipeline._state`); profiling and distillation also resume
mid-stage from their own journals.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import asdict
from functools import cached_property
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .._device import on_device, resolve_device
from .._io import atomic_path, ensure_writable_dir
from .._threads import torch_threads
from ..errors import InputError, TtmpdError
from ._config import RunConfig
from ._state import RunState

logger = logging.getLogger(__name__)


class RunInterrupted(TtmpdError):
    """A run was interrupted; finished stages are kept for ``--resume``."""

    exit_code = 130


class Run:
    """The artefacts of one run folder, loaded lazily from its files."""

    def __init__(self, config: RunConfig, out: str | Path) -> None:
        self.config = config
        self.out = Path(out)
        self.lut_path = Path(config.lut) if config.lut else self.out / "lut.parquet"

    # --- inputs -------------------------------------------------------------------------
    @cached_property
    def checkpoint(self):
        from ..models import load_checkpoint

        return load_checkpoint(self.config.model)

    @property
    def model(self) -> nn.Module:
        return self.checkpoint.model.eval()

    def to_input(self, images: np.ndarray) -> torch.Tensor:
        from ..base import to_model_input

        return to_model_input(images, self.checkpoint.normalization)

    @cached_property
    def finetune_images(self) -> np.ndarray:
        with np.load(self.out / "data" / "finetune.npz") as npz:
            return npz["images"]

    @cached_property
    def held_out(self) -> tuple[np.ndarray, np.ndarray | None]:
        with np.load(self.out / "data" / "held_out.npz") as npz:
            return npz["images"], npz["labels"] if "labels" in npz.files else None

    @cached_property
    def example(self) -> torch.Tensor:
        return self.to_input(self.finetune_images[:1])

    @cached_property
    def backend(self):
        from ..profiler import BackendConfig, get_backend

        config = BackendConfig(threads=self.config.threads, device=self.config.device)
        backend = get_backend(self.config.backend, config)
        backend.require_available()
        return backend

    @property
    def compute_device(self) -> str:
        """Where search, adaptive BN, distillation and evaluation compute (the backend's)."""
        return self.backend.compute_device

    # --- stage outputs ------------------------------------------------------------------
    @cached_property
    def predictor(self):
        from ..lut import load_predictor

        return load_predictor(self.out / "predictor.json", self.lut_path)[0]

    def load(self, relative: str) -> nn.Module:
        from ..models import load_checkpoint

        return load_checkpoint(self.out / relative).model.eval()

    def measure_beside_original(
        self, model: nn.Module, thresholds: Sequence[float] = ()
    ) -> tuple[float, float]:
        """``(original_ms, model_ms)`` (:func:`ttmpd.pruning.measure_beside`)."""
        from ..pruning import measure_beside

        return measure_beside(self.model, model, self.example, self.backend,
                              thresholds=thresholds)  # fmt: skip


# --- stages ---------------------------------------------------------------------------


def stage_data(run: Run) -> dict:
    from ..base import check_input_channels
    from ..data import load_stream
    from ..workflow import split_mask

    stream = load_stream(run.config.data)  # labels only when the stream has them
    check_input_channels(run.model, stream.images)
    n, k = len(stream.images), run.config.finetune_samples
    if k >= n:
        raise InputError(f"--finetune-samples {k} must be below the stream size {n}")
    pick = split_mask(n, k, run.config.seed)
    (run.out / "data").mkdir(parents=True, exist_ok=True)
    with atomic_path(run.out / "data" / "finetune.npz") as tmp, open(tmp, "wb") as fh:
        np.savez(fh, images=stream.images[pick])
    held = {"images": stream.images[~pick]}
    if stream.labels is not None:
        held["labels"] = stream.labels[~pick]
    with atomic_path(run.out / "data" / "held_out.npz") as tmp, open(tmp, "wb") as fh:
        np.savez(fh, **held)
    return {"stream": n, "finetune": k, "held_out": n - k, "labels": stream.labels is not None}


def stage_lut(run: Run) -> dict:
    from ..lut import profile_model
    from ..profiler import GridConfig

    result = profile_model(
        run.model, run.example, run.backend, run.lut_path,
        grid=GridConfig(channel_step=run.config.channel_step,
                        off_grid_per_unit=run.config.off_grid_per_unit), resume=True,
        model_name=Path(run.config.model).stem, progress=run.config.progress,
    )  # fmt: skip
    return {"lut": str(run.lut_path), "rows": len(result.table), "measured": result.measured,
            "reused": result.reused, "uncovered_ops": len(result.uncovered)}  # fmt: skip


def stage_predictor(run: Run) -> dict:
    from ..lut import LatencyPredictor, LatencyTable, save_predictor
    from ..pruning import calibrate_predictor

    table = LatencyTable.load(run.lut_path)
    predictor = LatencyPredictor(random_state=run.config.seed).fit(table)
    if run.config.calibrate_variants:
        measured = calibrate_predictor(predictor, run.model, run.example, run.backend,
                                       run.config.calibrate_variants, run.config.seed,
                                       progress=run.config.progress)  # fmt: skip
        original_ms = measured[0]
    else:
        from ..pruning import MEASURE_ROUNDS, measure_models

        (original_ms,) = measure_models([(run.model, run.example)], run.backend,
                                        rounds=MEASURE_ROUNDS)  # fmt: skip
    save_predictor(predictor, run.out / "predictor.json", table, str(run.lut_path))
    run.__dict__["predictor"] = predictor
    predicted_ms = predictor.predict_model(run.model, run.example).total_ms
    loo = 100 * np.abs(predictor.calibration_loo_)
    return {"calibration": [float(v) for v in predictor.calibration_],
            "second_slope": predictor.second_slope_,
            "weight_ms_per_mib": predictor.weight_ms_per_byte_ * 2**20,
            "calibration_loo_pct": [100 * float(v) for v in predictor.calibration_loo_],
            "measured_original_ms": original_ms, "predicted_original_ms": predicted_ms,
            "calibration_loo_worst_pct": float(loo.max()) if len(loo) else None}  # fmt: skip


def search_budget(budget: float, measured_ms: float, predicted_ms: float) -> float:
    """The budget is a fraction of the *measured* original latency; the search works on
    predicted latency, so it gets ``budget · measured / predicted`` (clipped below 1)."""
    fraction = budget * measured_ms / predicted_ms
    if fraction >= 1:
        raise InputError(
            f"the budget {budget} of the measured {measured_ms:.3f} ms is above the predicted "
            f"original latency {predicted_ms:.3f} ms: nothing to prune; lower the budget"
        )
    return fraction


def stage_prune(run: Run, state: RunState) -> dict:
    """Search to the budget; with ``budget_checks > 0``, measure the result beside the
    original (:meth:`Run.measure_beside_original`) and search again on a miss
    (:func:`ttmpd.pruning.checked_prune`; a re-search reuses the first one's scored
    candidates, :class:`ttmpd.pruning.BudgetSearch`). The search itself measures nothing;
    the check catches what the predictor misses (on ORT, layout effects of channel
    counts)."""
    from ..pruning import BudgetSearch, SearchConfig, checked_prune, save_prune_result

    cfg, figures = run.config, state.stages["predictor"]
    images = run.to_input(run.finetune_images[: cfg.proxy_samples])
    fraction = search_budget(cfg.budget, figures["measured_original_ms"],
                             figures["predicted_original_ms"])  # fmt: skip

    config = SearchConfig(budget=fraction, method=cfg.method, importance=cfg.importance,
                          seed=cfg.seed, groups=cfg.group_options(), progress=cfg.progress,
                          device=run.compute_device)  # fmt: skip
    search = BudgetSearch(run.model, run.example, run.predictor, images, config)
    checked = checked_prune(search, run.measure_beside_original, cfg.budget, fraction,
                            cfg.budget_checks)  # fmt: skip
    attempts, pick = checked.attempts, checked.kept
    summary = save_prune_result(checked.result, run.out / "prune", run.example,
                                normalization=run.checkpoint.normalization,
                                num_classes=run.checkpoint.num_classes)  # fmt: skip
    keys = ("base_latency_ms", "target_latency_ms", "predicted_latency_ms", "search_s",
            "candidates_evaluated", "removed_fraction")  # fmt: skip
    return {k: summary[k] for k in keys} | {
        "search_budget": attempts[pick]["search_budget"],
        "attempts": attempts,
        "kept_attempt": pick,
    }


def distill_student(
    teacher: nn.Module,
    student: nn.Module,
    images: np.ndarray,
    to_input: Callable[[np.ndarray], torch.Tensor],
    config,
    out_dir: Path | None = None,
    eval_data: tuple[np.ndarray, np.ndarray] | None = None,
    eval_epochs: Collection[int] | None = None,
) -> tuple[nn.Module, dict]:
    """Distil ``student`` from ``teacher`` on uint8 ``images`` with a
    :class:`~ttmpd.distill.DistillConfig`: teacher outputs cached once (unless
    ``config.online``), training resumed from ``out_dir/train_state.pt`` when present.
    With ``eval_data`` (uint8 images, labels) the figures include ``history``, the per-epoch
    table of :func:`~ttmpd.distill.distill` (accuracy at ``eval_epochs``)."""
    from ..distill import CacheConfig, SelectionConfig, TeacherCache, distill

    _, teacher_layers = config.resolve_layers(student)
    start = time.perf_counter()
    cache = TeacherCache.build(
        teacher, images, to_input, layers=teacher_layers,
        selection=SelectionConfig(size=len(images), seed=config.seed),
        config=CacheConfig(outputs=not config.online, device=config.device),
    )  # fmt: skip
    cache_s = time.perf_counter() - start
    resume = out_dir is not None and (out_dir / "train_state.pt").exists()
    result = distill(teacher, student, cache, to_input, config, out_dir=out_dir, resume=resume,
                     eval_data=eval_data, eval_epochs=eval_epochs)  # fmt: skip
    s = result.summary
    figures = {"cache_s": round(cache_s, 3), "train_s": s["train_seconds"],
               "steps": s["steps"], "teacher_forwards": s["teacher_forwards"],
               "online_teacher": config.online, "resumed": resume}  # fmt: skip
    if eval_data is not None:
        figures["accuracy_before"] = s["accuracy_before"]
        figures["history"] = result.history
    return result.student, figures


def stage_distill(run: Run) -> dict:
    from ..models import save_checkpoint

    out = run.out / "distill"
    ensure_writable_dir(out / "student.pt")
    student, figures = distill_student(run.model, run.load("prune/model.pt"),
                                       run.finetune_images, run.to_input,
                                       run.config.distill_config(run.compute_device),
                                       out)  # fmt: skip
    save_checkpoint(out / "student.pt", student, input_shape=tuple(run.example.shape[1:]),
                    num_classes=run.checkpoint.num_classes,
                    normalization=run.checkpoint.normalization)  # fmt: skip
    return figures


def stage_evaluate(run: Run) -> dict:
    from ..pruning._proxies import agreement

    images, labels = run.held_out
    device = resolve_device(run.compute_device)
    x = run.to_input(images)
    models = {"original": run.model, "pruned": run.load("prune/model.pt"),
              "final": run.load("distill/student.pt")}  # fmt: skip
    figures: dict = {"held_out": len(images)}

    def outputs(model: nn.Module) -> torch.Tensor:
        model = on_device(model, device)  # the run's models stay on the CPU for export
        return torch.cat([model(b.to(device)).cpu() for b in x.split(512)])

    with torch.no_grad():
        logits = {name: outputs(m) for name, m in models.items()}
    for name, out in logits.items():
        figures[f"agreement_{name}"] = agreement(out, logits["original"])
        if labels is not None:
            hits = out.argmax(1).numpy() == labels
            figures[f"accuracy_{name}"] = float(hits.mean())
    return figures


def stage_export(run: Run) -> dict:
    from ._export import export_checked_onnx

    check = export_checked_onnx(run.load("distill/student.pt"),
                                run.to_input(run.finetune_images[:16]),
                                run.out / "model.onnx")  # fmt: skip
    return {k: v for k, v in asdict(check).items() if k != "path"} | {"onnx": "model.onnx"}


def stage_measure(run: Run) -> dict:
    import pandas as pd

    from ..pruning import BUDGET_OVER

    final = run.load("distill/student.pt")
    before = run.predictor.predict_model(run.model, run.example).breakdown
    after = run.predictor.predict_model(final, run.example).breakdown
    layers = before[["name", "op", "in_channels", "out_channels", "latency_ms"]].rename(
        columns={"latency_ms": "before_ms", "in_channels": "in_before",
                 "out_channels": "out_before"})  # fmt: skip
    after = after[["name", "in_channels", "out_channels", "latency_ms"]].rename(
        columns={"latency_ms": "after_ms", "in_channels": "in_after",
                 "out_channels": "out_after"})  # fmt: skip
    # left: network order (an outer merge sorts the names); every pruned unit has a name
    # in the original
    layers = pd.merge(layers, after, on="name", how="left", sort=False)
    with atomic_path(run.out / "layers.csv") as tmp:
        layers.to_csv(tmp, index=False)
    original_ms, final_ms = run.measure_beside_original(final)
    predicted = run.predictor.predict_model(final, run.example).total_ms
    return {"original_ms": original_ms, "final_ms": final_ms,
            "measured_ratio": final_ms / original_ms, "predicted_final_ms": predicted,
            "measured_vs_predicted_pct": 100 * (final_ms / predicted - 1),
            "within_budget": bool(final_ms <= run.config.budget * original_ms
                                  * (1 + BUDGET_OVER))}  # fmt: skip


def stage_report(run: Run, state: RunState) -> dict:
    from ._report import write_report

    path = write_report(run, state)
    return {"report": str(path.relative_to(run.out))}


STAGES: tuple[tuple[str, Callable], ...] = (
    ("data", stage_data),
    ("lut", stage_lut),
    ("predictor", stage_predictor),
    ("prune", stage_prune),
    ("distill", stage_distill),
    ("evaluate", stage_evaluate),
    ("export", stage_export),
    ("measure", stage_measure),
    ("report", stage_report),
)


NEEDS_STATE = ("prune", "report")


def run_pipeline(
    config: RunConfig,
    out: str | Path,
    *,
    resume: bool = False,
    on_stage: Callable[[str, dict, bool], None] | None = None,
) -> RunState:
    """Run every stage not finished yet into ``out``; returns the run state.

    ``on_stage(name, figures, skipped)`` is called after each stage (for progress output).
    """
    out = Path(out)
    run = Run(config, out)
    resolve_device(run.compute_device)  # an unavailable backend or GPU: nothing written
    ensure_writable_dir(out / "run.json")
    state = RunState(out, config.signature(), resume)
    with torch_threads(config.threads):  # --threads governs every stage's torch work
        for name, stage in STAGES:
            if state.done(name):
                if on_stage:
                    on_stage(name, state.stages[name], True)
                continue
            start = time.perf_counter()
            try:
                figures = stage(run, state) if name in NEEDS_STATE else stage(run)
            except (KeyboardInterrupt, TtmpdError) as exc:
                if isinstance(exc, KeyboardInterrupt) or getattr(exc, "exit_code", 2) == 130:
                    raise RunInterrupted(
                        f"interrupted in stage {name!r}; finished stages are kept: rerun the "
                        "same command with --resume"
                    ) from None
                raise
            state.record(name, time.perf_counter() - start, figures)
            if on_stage:
                on_stage(name, figures, False)
    return state
