"""Models from torchvision, timm and transformers by name, always built without weights.

Spec syntax: ``SOURCE:NAME[?KEY=VALUE[,KEY=VALUE...]]`` with ``SOURCE`` one of
``torchvision``, ``timm`` or ``hf`` (Hugging Face transformers, built from a config:
:mod:`ttmpd.models._hf`)::

    torchvision:resnet50
    torchvision:resnet18?num_classes=10
    timm:vit_tiny_patch16_224?img_size=28,in_chans=1,patch_size=4,num_classes=10
    hf:bert?num_hidden_layers=2,hidden_size=128,num_attention_heads=2

Values are parsed as ``true``/``false`` (bool), ``none`` (None), an int, a float, or else
kept as a string. Quote the spec in a shell (``?`` is a glob character). torchvision models
get ``weights=None`` (and ``weights_backbone=None`` where the builder has it); timm models
get ``pretrained=False``; ``hf`` models are built from their config. Nothing is downloaded.

Both packages come with the ``zoo`` extra (``pip install 'ttmpd[zoo]'``), transformers with
the ``hf`` extra; each is imported only when such a spec is loaded. The torchvision wheels on
PyPI for Linux x86-64 are CUDA builds: with a CPU-only torch their C++ extension cannot
load and ``import torchvision`` stops at ``operator torchvision::nms does not exist``.
:func:`import_torchvision` first tries to load that extension itself; only when it does not
load does it define the two operators torchvision's import needs, with a pure-torch CPU
kernel for ``nms`` (docs/design/zoo-on-cpu-torch.md explains the reason and how to remove
this step). transformers imports torchvision when it is installed, so it is imported after.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.machinery
import importlib.util
import inspect
import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import torch
from torch import Tensor, nn

from ..errors import ModelLoadError, one_line
from ._hf import build_hf, import_transformers

logger = logging.getLogger(__name__)

SOURCES = ("torchvision", "timm", "hf")
#: packages a ``package.module:factory`` spec may need imported the CPU-safe way first
PACKAGES = ("torchvision", "timm", "transformers")
INSTALL_HINT = "pip install 'ttmpd[zoo]'"
SPEC_SYNTAX = "SOURCE:NAME[?KEY=VALUE,...] with SOURCE torchvision, timm or hf"

# Arguments that would load weights; ttmpd always builds without them.
_WEIGHT_ARGS = {
    "torchvision": ("weights", "weights_backbone"),
    "timm": ("pretrained", "checkpoint_path"),
    "hf": (),  # built from a config: there is no weight argument
}
_LISTERS = {
    "torchvision": "torchvision.models.list_models()",
    "timm": "timm.list_models('*pattern*')",
    "hf": "a model type (transformers.CONFIG_MAPPING) or a model class",
}

# The operators torchvision's import registers fake kernels for, as its C++ extension
# defines them (schemas read from torchvision 0.28.0's _C.so).
_OP_SCHEMAS = (
    "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
)
# Holds the stand-in definitions: they live as long as this Library object does.
_stand_in_ops: torch.library.Library | None = None


@dataclass(frozen=True)
class SourceSpec:
    """A parsed ``SOURCE:NAME?KEY=VALUE,...`` spec."""

    source: str
    name: str
    kwargs: dict[str, Any] = field(default_factory=dict)


def source_of(spec: str) -> str | None:
    """``"torchvision"``, ``"timm"`` or ``"hf"`` when ``spec`` names a model of that source,
    else None."""
    prefix, colon, _ = spec.partition(":")
    return prefix if colon and prefix in SOURCES else None


def _parse_value(text: str) -> Any:
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered == "none":
        return None
    for convert in (int, float):
        try:
            return convert(text)
        except ValueError:
            pass
    return text


def parse_source_spec(spec: str) -> SourceSpec:
    """Split ``SOURCE:NAME?KEY=VALUE,...``; raise ModelLoadError naming the bad part."""
    source = source_of(spec)
    if source is None:
        raise ModelLoadError(f"{spec!r} is not a model-source spec; give {SPEC_SYNTAX}")
    body = spec.partition(":")[2]
    name, question, arg_text = body.partition("?")
    name = name.strip()
    if not name:
        raise ModelLoadError(
            f"no model name in {spec!r}; give {source}:NAME (names: {_LISTERS[source]})"
        )
    kwargs: dict[str, Any] = {}
    if question and not arg_text.strip():
        raise ModelLoadError(f"nothing after '?' in {spec!r}; give KEY=VALUE,... or drop the '?'")
    for item in arg_text.split(",") if arg_text.strip() else ():
        key, equals, value = (part.strip() for part in item.partition("="))
        if not equals or not key.isidentifier() or not value:
            raise ModelLoadError(
                f"bad argument {item.strip()!r} in {spec!r}; write KEY=VALUE pairs separated "
                "by commas, e.g. ?num_classes=10,in_chans=1"
            )
        if key in kwargs:
            raise ModelLoadError(f"argument {key!r} is given twice in {spec!r}; keep one")
        kwargs[key] = _parse_value(value)
    return SourceSpec(source, name, kwargs)


# --- importing torchvision on a CPU-only torch ----------------------------------------------


def _missing(package: str) -> ModelLoadError:
    return ModelLoadError(f"{package} is not installed; install the model sources: {INSTALL_HINT}")


def _torchvision_op_exists(name: str) -> bool:
    try:
        getattr(torch.ops.torchvision, name)
    except (AttributeError, RuntimeError):
        return False
    return True


def _extension_loads(spec: importlib.machinery.ModuleSpec) -> bool:
    """Load torchvision's ``_C`` extension the way torchvision does; False if it cannot."""
    loader_details = (
        importlib.machinery.ExtensionFileLoader,
        importlib.machinery.EXTENSION_SUFFIXES,
    )
    for directory in spec.submodule_search_locations or ():
        found = importlib.machinery.FileFinder(directory, loader_details).find_spec("_C")
        if found is None or not found.origin:
            continue
        try:
            torch.ops.load_library(found.origin)
        except OSError as exc:  # e.g. a CUDA wheel: libtorch_cuda.so is not in a CPU torch
            logger.debug("torchvision's C++ extension does not load: %s", one_line(exc))
            return False
        return True
    return False


def _nms_cpu(dets: Tensor, scores: Tensor, iou_threshold: float) -> Tensor:
    """Greedy non-maximum suppression, computed as torchvision's C++ CPU kernel does.

    ``dets`` is ``[N, 4]`` boxes ``(x1, y1, x2, y2)``, ``scores`` is ``[N]``. Boxes are visited
    by descending score (ties by index); a box is kept unless an already kept box overlaps it
    with IoU = inter / (area_a + area_b - inter) strictly above ``iou_threshold``. Returns the
    kept indices (int64) in visiting order. O(kept x N) time, O(N) memory.
    """
    if dets.dim() != 2 or dets.size(1) != 4:
        raise RuntimeError(f"boxes should be a [N, 4] tensor, got shape {tuple(dets.shape)}")
    if scores.dim() != 1 or scores.size(0) != dets.size(0):
        raise RuntimeError(
            f"scores should be a [N] tensor matching boxes [{dets.size(0)}, 4], got shape "
            f"{tuple(scores.shape)}"
        )
    if dets.dtype != scores.dtype or not dets.is_floating_point():
        raise RuntimeError(
            f"boxes and scores should share one floating dtype, got {dets.dtype} and {scores.dtype}"
        )
    order = torch.argsort(scores, descending=True, stable=True)
    x1, y1, x2, y2 = dets.detach()[order].unbind(1)
    areas = (x2 - x1) * (y2 - y1)
    suppressed = torch.zeros(len(order), dtype=torch.bool)
    keep: list[int] = []
    for i in range(len(order)):
        if suppressed[i]:
            continue
        keep.append(i)
        rest = slice(i + 1, None)
        width = (torch.minimum(x2[i], x2[rest]) - torch.maximum(x1[i], x1[rest])).clamp_(min=0)
        height = (torch.minimum(y2[i], y2[rest]) - torch.maximum(y1[i], y1[rest])).clamp_(min=0)
        inter = width * height
        suppressed[rest] |= inter / (areas[i] + areas[rest] - inter) > iou_threshold
    return order[torch.tensor(keep, dtype=torch.long)]


def _define_stand_in_ops() -> torch.library.Library:
    library = torch.library.Library("torchvision", "FRAGMENT")
    for schema in _OP_SCHEMAS:
        library.define(schema)
    library.impl("nms", _nms_cpu, "CPU")  # qnms keeps no kernel: calling it raises
    return library


def _assert_stand_in_nms() -> None:
    """Replaces torchvision.ops.boxes' extension check: its nms reaches the stand-in."""


def _ensure_torchvision_ops(spec: importlib.machinery.ModuleSpec) -> None:
    global _stand_in_ops
    if _stand_in_ops is None and not _torchvision_op_exists("nms") and not _extension_loads(spec):
        logger.info(
            "torchvision's C++ extension does not load with torch %s; defining its nms/qnms "
            "operators with a pure-torch CPU nms",
            torch.__version__,
        )
        _stand_in_ops = _define_stand_in_ops()


def import_torchvision() -> ModuleType:
    """``import torchvision``, defining the operators its import needs if its C++ extension
    does not load (a CUDA wheel with a CPU-only torch). Raises ModelLoadError if missing."""
    module = sys.modules.get("torchvision")
    if module is not None:
        return module
    spec = importlib.util.find_spec("torchvision")
    if spec is None:
        raise _missing("torchvision")
    _ensure_torchvision_ops(spec)
    try:
        module = importlib.import_module("torchvision")
    except Exception as exc:
        raise ModelLoadError(
            f"importing torchvision failed with {one_line(exc)}; install the torchvision "
            f"release that matches torch {torch.__version__}: {INSTALL_HINT}"
        ) from None
    boxes = sys.modules.get("torchvision.ops.boxes")
    if _stand_in_ops is not None and hasattr(boxes, "_assert_has_ops"):
        # nms/batched_nms refuse unless the whole extension loaded. Other modules keep
        # torchvision's check (roi_align falls back to pure torch by itself); in boxes.py
        # only box_iou on rotated boxes shares it, and now fails with "no attribute".
        boxes._assert_has_ops = _assert_stand_in_nms
    return module


def import_timm() -> ModuleType:
    """``import timm`` (which imports torchvision, see :func:`import_torchvision`)."""
    module = sys.modules.get("timm")
    if module is not None:
        return module
    if importlib.util.find_spec("timm") is None:
        raise _missing("timm")
    import_torchvision()
    try:
        return importlib.import_module("timm")
    except Exception as exc:
        raise ModelLoadError(
            f"importing timm failed with {one_line(exc)}; reinstall it: {INSTALL_HINT}"
        ) from None


def prepare_import(package: str) -> None:
    """Make ``package`` (one of :data:`PACKAGES`) importable; for ``module:factory`` specs."""
    if package == "transformers":
        import_transformers(import_torchvision)
        return
    {"torchvision": import_torchvision, "timm": import_timm}[package]()


# --- building -------------------------------------------------------------------------------


def _unknown(source: str, name: str, names: list[str]) -> ModelLoadError:
    matches = difflib.get_close_matches(name, names, n=5, cutoff=0.6)
    hint = f"close matches: {', '.join(matches)}; " if matches else ""
    return ModelLoadError(
        f"unknown {source} model {name!r}; {hint}list the names with {_LISTERS[source]}"
    )


def _build(
    builder: Callable[..., Any], kwargs: dict[str, Any], parsed: SourceSpec, spec: str
) -> nn.Module:
    try:
        model = builder(**kwargs)
    except Exception as exc:
        raise ModelLoadError(
            f"building {parsed.source} model {parsed.name!r} raised {one_line(exc)}; check the "
            f"arguments (in spec {spec!r})"
        ) from None
    if not isinstance(model, nn.Module):
        raise ModelLoadError(
            f"{parsed.source} builder {parsed.name!r} returned a {type(model).__name__}, not a "
            "torch.nn.Module"
        )
    return model


def _build_torchvision(parsed: SourceSpec, kwargs: dict[str, Any], spec: str) -> nn.Module:
    models = import_torchvision().models
    names = models.list_models()
    if parsed.name not in names:
        raise _unknown("torchvision", parsed.name, names)
    builder = models.get_model_builder(parsed.name)
    kwargs = {**kwargs, "weights": None}
    if "weights_backbone" in inspect.signature(builder).parameters:
        kwargs["weights_backbone"] = None  # detection/segmentation backbones default to weights
    return _build(builder, kwargs, parsed, spec)


def _build_timm(parsed: SourceSpec, kwargs: dict[str, Any], spec: str) -> nn.Module:
    timm = import_timm()
    if not timm.is_model(parsed.name):
        raise _unknown("timm", parsed.name, timm.list_models())
    kwargs = {**kwargs, "model_name": parsed.name, "pretrained": False}
    return _build(timm.create_model, kwargs, parsed, spec)


def load_source_model(spec: str, **kwargs: Any) -> nn.Module:
    """Build the torchvision/timm/hf model named by ``spec`` (syntax in the module docstring).

    ``kwargs`` join those written in the spec; a key given in both raises. Weight arguments
    (``weights``, ``weights_backbone``, ``pretrained``, ``checkpoint_path``) are refused:
    models are always built with fresh weights. Every failure raises ModelLoadError.
    """
    parsed = parse_source_spec(spec)
    both = sorted(set(parsed.kwargs) & set(kwargs))
    if both:
        raise ModelLoadError(
            f"{', '.join(both)} given both in spec {spec!r} and as arguments; keep one"
        )
    merged = {**parsed.kwargs, **kwargs}
    refused = [key for key in _WEIGHT_ARGS[parsed.source] if key in merged]
    if refused:
        raise ModelLoadError(
            f"ttmpd builds {parsed.source} models without pretrained weights; drop "
            f"{', '.join(refused)} from {spec!r}"
        )
    if parsed.source == "torchvision":
        return _build_torchvision(parsed, merged, spec)
    if parsed.source == "hf":
        return build_hf(parsed.name, merged, spec, import_torchvision)
    return _build_timm(parsed, merged, spec)
