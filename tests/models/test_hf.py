"""``hf:NAME?k=v`` specs: transformers models built from a config (never downloaded), their
units priced with token-id inputs, and a one-line error when transformers is missing."""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
from collections import Counter

import pytest
import torch

import ttmpd.models._hf as hf
from ttmpd.cli import main
from ttmpd.cli._common import example_input, model_from_args, parse_input_shape
from ttmpd.errors import InputError, ModelLoadError
from ttmpd.models import load_model
from ttmpd.profiler import extract_units


def needs_transformers(test):
    skip = pytest.mark.skipif(
        importlib.util.find_spec("transformers") is None,
        reason="transformers not installed (pip install 'ttmpd[hf]')",
    )
    return pytest.mark.hf(skip(test))


BERT = "hf:bert?num_hidden_layers=2,hidden_size=128,num_attention_heads=2,intermediate_size=256"


@pytest.fixture(scope="module")
def bert():
    torch.manual_seed(0)
    return load_model(BERT).eval()


def _bert_params(vocab=30522, positions=512, width=128, mlp=256, layers=2) -> int:
    """BERT's parameter count written out: embeddings, layers, pooler."""
    embeddings = (vocab + positions + 2) * width + 2 * width
    attention = 4 * (width * width + width) + 2 * width
    ffn = width * mlp + mlp + mlp * width + width + 2 * width
    return embeddings + layers * (attention + ffn) + width * width + width


@needs_transformers
def test_config_arguments_build_the_model_they_describe(bert):
    assert sum(p.numel() for p in bert.parameters()) == _bert_params()
    ids = torch.randint(0, 30522, (2, 64), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        out = bert(ids)
    assert isinstance(out, torch.Tensor) and out.shape == (2, 64, 128)  # last_hidden_state


@needs_transformers
def test_a_model_class_name_builds_its_head():
    spec = "hf:BertForSequenceClassification?num_labels=3,num_hidden_layers=1,hidden_size=64"
    model = load_model(spec + ",num_attention_heads=2,intermediate_size=128").eval()
    with torch.no_grad():
        assert model(torch.zeros(1, 16, dtype=torch.long)).shape == (1, 3)  # logits


@needs_transformers
def test_bert_units_are_priced_at_64_tokens(bert):
    ids = torch.randint(0, 30522, (1, 64), generator=torch.Generator().manual_seed(0))
    units = extract_units(bert, ids, "none")
    # position and token-type lookups read constant buffers: not model data, not recorded
    assert not units.uncovered
    ops = Counter(u.config.op for u in units.units)
    assert ops == {"embedding": 1, "add": 6, "layernorm": 5, "linear": 13, "act": 3, "sdpa": 2}
    by_name = {u.name: u.config for u in units.units}
    embedding = by_name["model.embeddings.word_embeddings"]
    assert (embedding.in_channels, embedding.out_channels, embedding.in_h) == (30522, 128, 64)
    sdpa = by_name["model.encoder.layer.0.attention.self"]
    assert (sdpa.op, sdpa.heads, sdpa.in_channels, sdpa.in_h, sdpa.in_w) == ("sdpa", 2, 128, 64, 64)
    assert by_name["model.embeddings.LayerNorm"].op == "layernorm"


@needs_transformers
def test_profile_takes_token_ids_from_the_cli(tmp_path, capsys):
    argv = ["profile", "--model", BERT, "--input-shape", "int64:1,32", "--backend", "fake"]
    argv += ["--keep-fractions", "1", "--out", str(tmp_path / "t.parquet"), "--json"]
    assert main([*argv, "--no-progress"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["uncovered"] == [] and summary["rows"] >= 6  # one per unit kind at least


@needs_transformers
def test_unknown_names_and_bad_arguments_are_one_line():
    with pytest.raises(ModelLoadError, match="unknown hf model 'bertt'; close matches: bert"):
        load_model("hf:bertt")
    with pytest.raises(ModelLoadError, match="hf model 'bert'") as info:
        load_model("hf:bert?hidden_size=100,num_attention_heads=3")  # 100 % 3 != 0
    assert "\n" not in str(info.value)


@needs_transformers
def test_an_architecture_without_sdpa_keeps_its_own_attention(monkeypatch):
    real, tried = hf._instantiate, []

    def no_sdpa(transformers, cls, config):
        tried.append(config._attn_implementation)
        if config._attn_implementation == "sdpa":
            raise ValueError("this model does not support sdpa")
        return real(transformers, cls, config)

    monkeypatch.setattr(hf, "_instantiate", no_sdpa)
    model = load_model(BERT)  # None: transformers' default for the architecture
    assert tried == ["sdpa", None] and isinstance(model, hf.HFModel)


def test_missing_transformers_is_one_line_with_the_extra(monkeypatch, tmp_path, capsys):
    real = importlib.util.find_spec
    monkeypatch.delitem(sys.modules, "transformers", raising=False)
    monkeypatch.setattr(
        hf.importlib.util,
        "find_spec",
        lambda name, *a: None if name == "transformers" else real(name, *a),
    )
    with pytest.raises(ModelLoadError, match=r"transformers is not installed.*ttmpd\[hf\]"):
        load_model(BERT)
    argv = ["profile", "--model", BERT, "--input-shape", "int64:1,32", "--backend", "fake"]
    assert main([*argv, "--out", str(tmp_path / "t.parquet")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "pip install 'ttmpd[hf]'" in err


def test_importing_ttmpd_does_not_import_transformers():
    code = "import sys, ttmpd, ttmpd.models, ttmpd.cli; print('transformers' in sys.modules)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "False"


def test_input_shapes_name_their_dtype():
    assert parse_input_shape("1,3,28,28") == ("float32", (1, 3, 28, 28))
    assert parse_input_shape("int64:1,128") == ("int64", (1, 128))
    with pytest.raises(InputError, match="unknown input dtype 'int8'"):
        parse_input_shape("int8:1,128")
    args = argparse.Namespace(model="resnet20", input_shape="int64:1,3,32,32", num_classes=None)
    with pytest.raises(InputError, match=r"token ids for an nn\.Embedding"):
        model_from_args(args)


def test_token_ids_stay_below_the_first_embeddings_vocabulary():
    model = torch.nn.Sequential(torch.nn.Embedding(7, 4), torch.nn.Embedding(1000, 4))
    ids = example_input(model, "int64", (4, 256))
    assert ids.dtype == torch.int64 and ids.shape == (4, 256)
    assert int(ids.min()) == 0 and int(ids.max()) == 6  # 1024 draws cover all 7 ids


@needs_transformers
def test_roberta_position_ids_are_index_arithmetic_and_its_heads_prune():
    """RoBERTa derives int32 position ids from the token ids (ne, cumsum, mul, add): no
    float work, so no unit; the float units are priced and the heads are pruning groups."""
    from ttmpd.pruning import channel_groups

    spec = ("hf:roberta?num_hidden_layers=1,hidden_size=32,num_attention_heads=2,"
            "intermediate_size=64,vocab_size=100")  # fmt: skip
    model = load_model(spec).eval()
    ids = torch.randint(2, 100, (1, 16), generator=torch.Generator().manual_seed(0))
    extraction = extract_units(model, ids)
    assert not extraction.uncovered
    assert all(u.config.dtype == "float32" for u in extraction.units)
    ops = Counter(u.config.op for u in extraction.units)
    assert ops["embedding"] == 3 and ops["layernorm"] == 3  # words, types, positions
    heads = [g for g in channel_groups(model, ids) if g.id.endswith("#heads")]
    assert [(g.channels, g.prunable) for g in heads] == [(2, True)]
