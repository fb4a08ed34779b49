"""Hugging Face ``transformers`` models built from a config in code: ``hf:NAME?KEY=VALUE,...``.

``NAME`` is either a model type (``bert``, ``distilbert``, ``vit``, ...: the keys of
transformers' ``CONFIG_MAPPING``), built as the bare encoder with ``AutoModel``, or a model
class of transformers (``BertForSequenceClassification``), built with its own config class.
``KEY=VALUE`` pairs go to the config::

    hf:bert?num_hidden_layers=2,hidden_size=128,num_attention_heads=2,intermediate_size=512
    hf:BertForSequenceClassification?num_labels=2,num_hidden_layers=2

Nothing is downloaded: the model is built from the config with fresh weights, never with
``from_pretrained``. Attention asks for transformers' ``sdpa`` implementation (one
``scaled_dot_product_attention`` call, priced as one unit) and falls back to the model's
default where the architecture has none. The model is wrapped in :class:`HFModel`, whose
forward takes one tensor (token ids or pixels) and returns the first output
(``last_hidden_state``, ``logits``) as a tensor, the form extraction, pruning and ONNX export
expect. ``transformers`` comes with the ``hf`` extra (``pip install 'ttmpd[hf]'``) and is
imported only when such a spec is loaded.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import logging
import sys
from types import ModuleType
from typing import Any

import torch
from torch import nn

from ..errors import ModelLoadError, one_line

logger = logging.getLogger(__name__)

HF_INSTALL_HINT = "pip install 'ttmpd[hf]'"


class HFModel(nn.Module):
    """A transformers model as tensor in, tensor out: ``model(x)[0]``."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x, return_dict=True)[0]


def import_transformers(import_torchvision) -> ModuleType:
    """``import transformers``; its import reaches torchvision when that is installed, so
    ``import_torchvision`` (ttmpd's CPU-safe import) runs first. Raises ModelLoadError."""
    module = sys.modules.get("transformers")
    if module is not None:
        return module
    if importlib.util.find_spec("transformers") is None:
        raise ModelLoadError(f"transformers is not installed; install it: {HF_INSTALL_HINT}")
    if importlib.util.find_spec("torchvision") is not None:
        import_torchvision()
    try:
        return importlib.import_module("transformers")
    except Exception as exc:
        raise ModelLoadError(
            f"importing transformers failed with {one_line(exc)}; reinstall it: {HF_INSTALL_HINT}"
        ) from None


def _model_class(transformers: ModuleType, name: str) -> type | None:
    """The transformers model class called ``name`` (None when there is none)."""
    if not name[:1].isupper():
        return None
    try:
        candidate = getattr(transformers, name)
    except (AttributeError, ModuleNotFoundError, ImportError):
        return None
    base = transformers.PreTrainedModel
    return candidate if isinstance(candidate, type) and issubclass(candidate, base) else None


def _config(transformers: ModuleType, name: str, kwargs: dict[str, Any], spec: str):
    model_types = sorted(transformers.CONFIG_MAPPING.keys())
    cls = _model_class(transformers, name)
    try:
        if cls is not None:
            return cls, cls.config_class(**kwargs)
        if name in model_types:
            return None, transformers.AutoConfig.for_model(name, **kwargs)
    except Exception as exc:
        raise ModelLoadError(
            f"the config of hf model {name!r} refused the arguments: {one_line(exc)} "
            f"(in spec {spec!r})"
        ) from None
    matches = difflib.get_close_matches(name, model_types, n=5, cutoff=0.6)
    hint = f"close matches: {', '.join(matches)}; " if matches else ""
    raise ModelLoadError(
        f"unknown hf model {name!r}; {hint}give a model type (bert, vit, ...: "
        "transformers.CONFIG_MAPPING) or a model class (BertForSequenceClassification)"
    )


def _instantiate(transformers: ModuleType, cls: type | None, config) -> nn.Module:
    if cls is None:
        return transformers.AutoModel.from_config(config)
    return cls(config)


def build_hf(name: str, kwargs: dict[str, Any], spec: str, import_torchvision) -> nn.Module:
    """Build ``hf:NAME`` from its config (module docstring); ModelLoadError on failure."""
    transformers = import_transformers(import_torchvision)
    cls, config = _config(transformers, name, kwargs, spec)
    config._attn_implementation = "sdpa"
    try:
        try:
            model = _instantiate(transformers, cls, config)
        except ValueError as exc:  # no sdpa for this architecture
            logger.info("hf model %r: %s; using its default attention", name, one_line(exc))
            config._attn_implementation = None
            model = _instantiate(transformers, cls, config)
    except Exception as exc:
        raise ModelLoadError(
            f"building hf model {name!r} raised {one_line(exc)}; check the arguments "
            f"(in spec {spec!r})"
        ) from None
    return HFModel(model.eval())
