"""``ttmpd run`` on the shipped ViT (fake backend): heads and MLP widths are pruned to the
budget, the student runs and exports, accuracies are reported; the group flags reach it."""

import json
from pathlib import Path

import numpy as np
import pytest

import ttmpd.models
from ttmpd.cli import build_parser, main
from ttmpd.cli.run_cmd import config_from_args
from ttmpd.data import load_mnist
from ttmpd.models import load_checkpoint
from ttmpd.pruning import GroupOptions

MODEL = str(Path(ttmpd.models.__file__).parent / "vit_mnist.pt")
SMALL = ["--backend", "fake", "--channel-step", "16", "--calibrate-variants", "2",
         "--finetune-samples", "64", "--proxy-samples", "32", "--epochs", "2",
         "--no-progress"]  # fmt: skip


@pytest.fixture(scope="module")
def stream(tmp_path_factory):
    mnist = load_mnist("test")
    path = tmp_path_factory.mktemp("data") / "stream.npz"
    np.savez(path, images=mnist.images[:240], labels=mnist.labels[:240])
    return path


def _widths(model) -> list[tuple[int, int]]:
    return [(block.attn.num_heads, block.fc1.out_features) for block in model.blocks]


def test_run_prunes_heads_and_mlp_widths_to_the_budget(tmp_path, stream, capsys):
    out = tmp_path / "run"
    argv = ["run", "--model", MODEL, "--data", str(stream), "--out", str(out), "--budget", "0.6"]
    assert main([*argv, *SMALL, "--json"]) == 0
    result = json.loads(capsys.readouterr().out)["stages"]
    # the fake backend's latency is the predictor's ground truth: the budget must hold
    assert result["measure"]["measured_ratio"] <= 0.6 * 1.05
    assert result["measure"]["within_budget"] is True
    assert result["export"]["argmax_agreement"] == 1.0  # the pruned ViT runs and exports
    plan = json.loads((out / "prune" / "plan.json").read_text())
    pruned = {gid for gid, g in plan["groups"].items() if len(g["keep"]) < g["channels"]}
    assert pruned and pruned <= {f"blocks.{b}.{n}" for b in range(4) for n in ("attn#heads", "fc1")}
    student = load_checkpoint(out / "distill" / "student.pt").model
    base = _widths(load_checkpoint(MODEL).model)
    after = _widths(student)
    assert after != base and all(
        h <= h0 and f <= f0 for (h, f), (h0, f0) in zip(after, base, strict=True)
    )
    for block in student.blocks:  # attributes follow the pruned layers
        attn = block.attn
        assert attn.qkv.out_features == 3 * attn.num_heads * attn.head_dim
    figures = result["evaluate"]
    assert figures["accuracy_original"] >= 0.9  # the shipped model on clean digits
    assert figures["accuracy_final"] > 0.5  # distilled: far above chance (0.1)


def test_embedding_flag_reaches_budgets_heads_and_mlps_cannot(tmp_path, stream, capsys):
    """Heads and MLP widths alone stop at about 0.5 of the latency (fake backend);
    --embedding prunes the residual width (patch_embed's group) too and reaches 0.45."""
    argv = ["run", "--model", MODEL, "--data", str(stream), "--budget", "0.45", *SMALL]
    assert main([*argv, "--out", str(tmp_path / "plain")]) == 2
    assert "below what pruning can reach" in capsys.readouterr().err
    out = tmp_path / "embedding"
    assert main([*argv, "--out", str(out), "--embedding", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)["stages"]
    assert result["measure"]["measured_ratio"] <= 0.45 * 1.05
    plan = json.loads((out / "prune" / "plan.json").read_text())
    embedding = plan["groups"]["patch_embed"]
    assert len(embedding["keep"]) < embedding["channels"] == 64
    student = load_checkpoint(out / "distill" / "student.pt").model
    assert student.pos_embed.shape[-1] == student.norm.normalized_shape[0] < 64


def test_group_flags_reach_the_search_and_old_runs_still_resume(stream):
    argv = ["run", "--model", MODEL, "--data", str(stream), "--out", "x", "--backend", "fake"]
    plain = config_from_args(build_parser().parse_args(argv))
    opted = config_from_args(build_parser().parse_args([*argv, "--head-dims", "--embedding"]))
    assert plain.group_options() == GroupOptions()
    assert opted.group_options() == GroupOptions(head_dims=True, embedding=True)
    # runs recorded before the flags existed have neither key in their signature
    assert not {"head_dims", "embedding"} & set(plain.signature())
    assert opted.signature()["head_dims"] is True and opted.signature()["embedding"] is True
    prune = build_parser().parse_args(["prune", "--model", MODEL, "--data", "mnist", "--lut",
                                       "t.parquet", "--budget", "0.5", "--out", "o",
                                       "--head-dims"])  # fmt: skip
    assert (prune.head_dims, prune.embedding) == (True, False)
