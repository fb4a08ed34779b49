"""Robustness of the shipped base model (ResNet-20 on MNIST) to the test-time corruptions.

Evaluates ``ttmpd/models/resnet20_mnist.pt`` on the clean MNIST test split (4,000 images)
and on every corruption at severities 3 and 5 (corruption seed 0), without adaptation.
The table is laid out like the CIFAR-10-C tables of the test-time adaptation literature
(TENT, Wang et al., ICLR 2021, Table 2): one row per method and severity, one column per
corruption (grouped by family), error % (= 100 - accuracy %), plus the mean over
corruptions and the clean error.

    python benchmarks/base_model_robustness.py [--threads 2] [--limit N]

Writes benchmarks/results/base_model_robustness.{csv,json,md}.
"""

from __future__ import annotations

import argparse
import time

import pandas as pd
import torch
from _report import RESULTS, markdown_table, write_results

from ttmpd.base import reference_checkpoint_path, robustness_table, summarize
from ttmpd.data import get_corruption, list_corruptions
from ttmpd.models import load_checkpoint

SEVERITIES = (3, 5)
METHOD = "source model, no adaptation"
FAMILIES = ("noise", "blur", "photometric", "geometric")
SHORT = {
    "gaussian_noise": "gauss",
    "shot_noise": "shot",
    "impulse_noise": "impul",
    "speckle_noise": "speck",
    "defocus_blur": "defoc",
    "gaussian_blur": "gblur",
    "motion_blur": "motn",
    "zoom_blur": "zoom",
    "brightness": "brit",
    "contrast": "contr",
    "elastic_transform": "elast",
    "pixelate": "pixel",
    "jpeg_compression": "jpeg",
    "rotate": "rot",
    "translate": "trans",
}


def ordered_corruptions() -> list[str]:
    """Corruptions grouped by family (noise, blur, photometric, geometric), then by name."""
    names = list_corruptions()
    rank = {family: i for i, family in enumerate(FAMILIES)}
    return sorted(names, key=lambda n: (rank.get(get_corruption(n).family, len(rank)), n))


def error_table(table: pd.DataFrame, names: list[str]) -> pd.DataFrame:
    """Wide table: method, severity, one error-% column per corruption, mean, clean."""
    clean_error = 100 * (1 - summarize(table)["clean"])
    rows = []
    for severity in SEVERITIES:
        cells = table[table["severity"] == severity].set_index("corruption")["accuracy"]
        errors = {SHORT.get(n, n): round(100 * (1 - float(cells[n])), 2) for n in names}
        rows.append(
            {
                "method": METHOD,
                "severity": severity,
                **errors,
                "mean": round(sum(errors.values()) / len(errors), 2),
                "clean": round(clean_error, 2),
            }
        )
    return pd.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--limit", type=int, default=None, help="first N test images only")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    path = reference_checkpoint_path()
    checkpoint = load_checkpoint(path)
    names = ordered_corruptions()
    start = time.perf_counter()
    table = robustness_table(checkpoint, "mnist", names, SEVERITIES, seed=0, limit=args.limit)
    elapsed = time.perf_counter() - start
    summary = summarize(table)
    wide = error_table(table, names)
    md = markdown_table(wide, digits=1)
    n = int(table["n"].iloc[0])
    lines = [
        f"Base model `{path.name}` (ResNet-20, MNIST source split), MNIST test split "
        f"({n} images), corruption seed 0. Error % (lower is better).",
        "",
        md,
        "",
        f"Clean accuracy {summary['clean'] * 100:.2f}%; mean accuracy over "
        f"{summary['n_corruptions']} corruptions: "
        + ", ".join(f"severity {s} {a * 100:.2f}%" for s, a in summary["mean_by_severity"].items())
        + f". Evaluated {len(table)} cells x {n} images in {elapsed:.1f} s "
        f"({args.threads} threads).",
    ]
    text = "\n".join(lines)
    print(text)
    out = RESULTS / "base_model_robustness"
    write_results(
        out,
        wide,
        checkpoint=path.name,
        checkpoint_metadata={k: checkpoint.metadata.get(k) for k in ("seed", "epochs")},
        metric="error % = 100 - top-1 accuracy %",
        n_images=n,
        corruption_seed=0,
        severities=list(SEVERITIES),
        clean_accuracy=summary["clean"],
        mean_accuracy_by_severity=summary["mean_by_severity"],
        accuracy_cells=table.to_dict("records"),
        seconds=round(elapsed, 2),
        threads=args.threads,
        torch_version=str(torch.__version__),
    )
    out.with_suffix(".md").write_text(text + "\n")


if __name__ == "__main__":
    main()
