"""``report.md`` of a run: results, figures, stage times, configuration, artefacts."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd

from .._figures import pyplot, save_figure
from .._io import atomic_path
from ._state import RunState

#: Output files of a run, in the order the report lists them.
ARTEFACTS = (
    ("report.md", "this report"),
    ("run.json", "configuration and every stage's figures (used by --resume)"),
    ("data/finetune.npz", "the unlabeled test images used for pruning and fine-tuning"),
    ("data/held_out.npz", "the rest of the stream, for evaluation only"),
    ("predictor.json", "the fitted latency predictor (refits from the LUT on version change)"),
    ("prune/model.pt", "pruned model before fine-tuning (ttmpd checkpoint)"),
    ("prune/plan.json", "prune plan: kept channel indices per group"),
    ("prune/candidates.csv", "every candidate the search evaluated"),
    ("distill/student.pt", "the final model (ttmpd checkpoint)"),
    ("distill/history.csv", "fine-tuning loss per epoch"),
    ("model.onnx", "the final model in ONNX, checked against PyTorch"),
    ("layers.csv", "per-layer latency before and after"),
    ("pareto.png", "the search: predicted accuracy against predicted latency"),
    ("layers.png", "per-layer latency before and after"),
)


def _pct(v) -> str:
    return "—" if v is None else f"{100 * v:.2f}%"


def _table(rows: list[tuple], header: tuple[str, ...]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def plot_search(log: pd.DataFrame, measured: dict, path: Path, title: str) -> Path:
    """Two panels. Left, the search in its own units: each evaluated candidate's predicted
    latency (ms) against the search's ranking score, and the accepted path. Right, what
    was measured: the original and final models' measured latency (ms) against held-out
    accuracy (%). The score ranks candidates; it is not an accuracy."""
    plt = pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    y = next(
        (c for c in ("proxy_score", "predicted_acc", "v1", "short_ft_agreement") if c in log), None
    )
    if y is not None and "predicted_latency_ms" in log:
        left.scatter(log["predicted_latency_ms"], log[y], s=10, color="0.6", label="candidates")
        path_rows = log[log["accepted"]]
        left.plot(path_rows["predicted_latency_ms"], path_rows[y], "-o", ms=3, color="C0",
                  label="accepted")  # fmt: skip
        left.set_ylabel(f"search score ({y})")
        left.legend(fontsize=8, loc="lower right")
    left.set_xlabel("predicted latency (ms)")
    left.set_title("search (predicted)")
    left.grid(alpha=0.3)
    for (name, (ms, acc)), marker in zip(measured.items(), "*sD", strict=False):
        if acc is not None:
            right.scatter([ms], [100 * acc], marker=marker, s=90, zorder=4, label=name)
            right.annotate(name, (ms, 100 * acc), textcoords="offset points", xytext=(6, 4),
                           fontsize=8)  # fmt: skip
    right.set_xlabel("measured latency (ms)")
    right.set_ylabel("held-out accuracy (%)")
    right.set_title("result (measured)")
    right.margins(0.2)  # room for the labels
    right.grid(alpha=0.3)
    fig.suptitle(title)
    return save_figure(fig, path)


def plot_layers(layers: pd.DataFrame, path: Path) -> Path:
    """Predicted latency of each unit before and after pruning, in network order, top to
    bottom."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 0.25 * len(layers) + 1.2))
    pos = np.arange(len(layers))[::-1]  # the first unit on top
    ax.barh(pos + 0.2, layers["before_ms"].fillna(0), 0.4, label="original")
    ax.barh(pos - 0.2, layers["after_ms"].fillna(0), 0.4, label="pruned")
    labels = [f"{n} ({op})" for n, op in zip(layers["name"], layers["op"], strict=True)]
    ax.set_yticks(pos, labels, fontsize=8)
    ax.set_ylim(-0.7, len(layers) - 0.3)
    ax.set_xlabel("predicted latency (ms)")
    ax.legend(loc="lower right")
    ax.grid(axis="x", alpha=0.3)
    return save_figure(fig, path)


def write_report(run, state: RunState) -> Path:
    """Write ``OUT/report.md`` (+ ``pareto.png``, ``layers.png``) from the finished stages."""
    cfg, st, out = run.config, state.stages, run.out
    ev, ms, pr = st["evaluate"], st["measure"], st["prune"]
    log = pd.read_csv(out / "prune" / "candidates.csv")
    measured = {"original": (ms["original_ms"], ev.get("accuracy_original")),
                "final": (ms["final_ms"], ev.get("accuracy_final"))}  # fmt: skip
    plot_search(log, measured, out / "pareto.png", f"{cfg.method}, budget {cfg.budget}")
    plot_layers(pd.read_csv(out / "layers.csv"), out / "layers.png")
    results = _table(
        [
            ("measured latency (ms)", f"{ms['original_ms']:.3f}", "—", f"{ms['final_ms']:.3f}"),
            (
                "predicted latency (ms)",
                f"{pr['base_latency_ms']:.3f}",
                f"{pr['predicted_latency_ms']:.3f}",
                f"{ms['predicted_final_ms']:.3f}",
            ),
            (
                "held-out accuracy",
                _pct(ev.get("accuracy_original")),
                _pct(ev.get("accuracy_pruned")),
                _pct(ev.get("accuracy_final")),
            ),
            (
                "agreement with the original",
                _pct(ev["agreement_original"]),
                _pct(ev["agreement_pruned"]),
                _pct(ev["agreement_final"]),
            ),
        ],
        ("", "original", "pruned", "pruned + distilled"),
    )
    budget_line = (
        f"Budget {cfg.budget} of the original latency: measured {ms['measured_ratio']:.3f} "
        f"({'within' if ms['within_budget'] else 'NOT within'} budget + 2%); measured vs "
        f"predicted {ms['measured_vs_predicted_pct']:+.1f}%."
    )
    worst = st["predictor"].get("calibration_loo_worst_pct")  # absent before 2026-12-01
    if worst is not None:
        n = len(st["predictor"]["calibration_loo_pct"])
        budget_line += (
            f" The calibration predicted each of its {n} measured models from the "
            f"others within {worst:.1f}% (leave-one-out)."
        )
    attempts = pr.get("attempts", [])
    if len(attempts) > 1:
        tried = ", ".join(f"{a['measured_fraction']:.3f}" for a in attempts)
        budget_line += (
            f" Budget check: {len(attempts)} searches measured {tried} of the original "
            f"against the budget {cfg.budget}; search {pr['kept_attempt'] + 1} was kept."
        )
    stage_rows = [(name, f"{info.get('seconds', 0.0):.1f}") for name, info in st.items()]
    stage_rows.append(("report", "(this file)"))
    prune_ft = st["prune"]["seconds"] + st["distill"]["seconds"]
    config_rows = [(k, f"`{v}`") for k, v in state.signature.items()]
    artefacts = [
        (f"`{f}`", what) for f, what in ARTEFACTS if (out / f).exists() or f == "report.md"
    ]
    text = "\n\n".join(
        [
            f"# ttmpd run: {Path(cfg.model).name} on {cfg.backend}",
            f"{dt.datetime.now().isoformat(timespec='seconds')} · method `{cfg.method}` · "
            f"{st['data']['finetune']} unlabeled fine-tuning images, "
            f"{st['data']['held_out']} held out",
            "## Result",
            results,
            budget_line,
            f"ONNX export: ONNX Runtime vs PyTorch max |Δ| {st['export']['max_abs_diff']:.2e} "
            f"on {st['export']['samples']} inputs, arg-max agreement "
            f"{_pct(st['export']['argmax_agreement'])}.",
            "## Search",
            "![search](pareto.png)",
            "## Per-layer latency (predicted, before and after)",
            "![layers](layers.png)",
            "## Stage times (s)",
            _table(stage_rows, ("stage", "seconds")),
            f"Prune + fine-tune: {prune_ft:.1f} s.",
            "## Configuration",
            _table(config_rows, ("setting", "value")),
            "## Artefacts",
            _table(artefacts, ("file", "content")),
        ]
    )
    with atomic_path(out / "report.md") as tmp:
        tmp.write_text(text + "\n")
    return out / "report.md"
