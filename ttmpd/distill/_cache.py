"""Teacher outputs computed once and reused every epoch: the pseudo-label cache.

:meth:`TeacherCache.build` walks the test stream in a seeded random order through the
teacher (``inference_mode``, batched), lets a :class:`~ttmpd.distill._selection.Selector`
accept samples until the subset is full, and stores for each accepted sample and each of
``views`` stored views (see :mod:`ttmpd.distill._augment`):

==================  ===========================  ==========================================
array               shape                        meaning
==================  ===========================  ==========================================
``indices``         ``(n,)`` int64               position of each sample in the stream
``images``          ``(K, n, H, W, C)`` uint8    the inputs (view 0 = the original)
``logits``          ``(K, n, classes)`` float32  teacher logits (pseudo labels = argmax)
``feature<i>``      ``(K, n, *shape)`` float32   hooked teacher feature of layer ``i``
==================  ===========================  ==========================================

In memory by default; with ``CacheConfig.directory`` every array is a ``.npy`` numpy memmap
in that directory plus ``meta.json`` (written last, atomically, with
:data:`SCHEMA_VERSION` and a fingerprint of teacher weights, data, layers and settings). A
later build with the same fingerprint loads the memmaps and runs no teacher pass at all; a
different fingerprint or a half-written directory is rebuilt.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .._device import check_device_spec, input_on, on_device, resolve_device
from .._io import atomic_path
from ..errors import InputError
from ._augment import random_shift
from ._features import FeatureHooks, Features
from ._selection import SelectionConfig, Selector

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 1
META = "meta.json"

#: ``uint8`` NHWC images -> model input tensor (e.g. ``ttmpd.base.to_model_input`` with the
#: checkpoint's normalisation bound).
ToInput = Callable[[np.ndarray], torch.Tensor]


@dataclass(frozen=True)
class CacheConfig:
    """Where and how teacher outputs are cached.

    Attributes:
        views: stored views per sample (1 = no augmentation; see ``_augment``).
        shift_px: maximum random shift of views 1..K-1, in pixels.
        batch_size: teacher batch size.
        directory: a cache directory for numpy memmaps, or None to keep arrays in memory.
        outputs: store teacher outputs (False in online mode: only the subset is chosen).
        device: where the teacher runs (``cpu``, ``cuda``, ``cuda:N``; a copy of it goes
            there); the stored outputs are float32 arrays on the host either way.
    """

    views: int = 1
    shift_px: int = 2
    batch_size: int = 256
    directory: str | None = None
    outputs: bool = True
    device: str = "cpu"

    def __post_init__(self) -> None:
        check_device_spec(self.device)
        if isinstance(self.views, bool) or not isinstance(self.views, int) or self.views < 1:
            raise InputError(f"views must be a positive integer, got {self.views!r}")
        if self.shift_px < 0 or self.batch_size < 1:
            raise InputError("shift_px must be >= 0 and batch_size >= 1")


@dataclass
class TeacherCache:
    """Cached subset and teacher outputs (see the module docstring).

    ``teacher_forwards`` counts samples (image views) passed through the teacher to build
    it; 0 when it was loaded from a matching cache directory.
    """

    arrays: dict[str, np.ndarray]
    layers: tuple[str, ...] = ()
    teacher_forwards: int = 0
    examined: int = 0
    meta: dict = field(default_factory=dict)

    @property
    def indices(self) -> np.ndarray:
        return self.arrays["indices"]

    @property
    def images(self) -> np.ndarray:
        return self.arrays["images"]

    @property
    def num_samples(self) -> int:
        return len(self.arrays["indices"])

    @property
    def views(self) -> int:
        return int(self.arrays["images"].shape[0])

    @property
    def has_outputs(self) -> bool:
        return "logits" in self.arrays

    def feature_shapes(self) -> tuple[tuple[int, ...], ...]:
        return tuple(tuple(self.arrays[f"feature{i}"].shape[2:]) for i in range(len(self.layers)))

    def layer_positions(self, layers: Sequence[str]) -> tuple[int, ...]:
        """Positions of ``layers`` among the cached teacher layers, or InputError."""
        missing = [name for name in layers if name not in self.layers]
        if missing:
            raise InputError(
                f"the cache holds teacher layers {list(self.layers)} but the losses need "
                f"{list(layers)}; rebuild the cache with those layers"
            )
        return tuple(self.layers.index(name) for name in layers)

    def batch(
        self, ids: np.ndarray, views: np.ndarray, positions: Sequence[int] | None = None
    ) -> tuple[np.ndarray, Features | None]:
        """Images ``(B, H, W, C)`` and cached teacher :class:`Features` of samples ``ids``
        in views ``views`` (None without stored outputs); features of the cached layers at
        ``positions`` (default all). ``Features.index`` is ``ids``."""
        images = self.images[views, ids]
        if not self.has_outputs:
            return images, None
        if positions is None:
            positions = range(len(self.layers))
        index = torch.from_numpy(np.asarray(ids, dtype=np.int64))
        logits = torch.from_numpy(np.asarray(self.arrays["logits"][views, ids]))
        feats = tuple(
            torch.from_numpy(np.asarray(self.arrays[f"feature{i}"][views, ids])) for i in positions
        )
        return images, Features(logits, feats, index)

    def saved_forwards(self, epochs: int) -> int:
        """Teacher passes an online run of ``epochs`` would make beyond this cache's."""
        return epochs * self.num_samples - self.num_samples * self.views

    @classmethod
    def build(
        cls,
        teacher: nn.Module,
        images: np.ndarray,
        to_input: ToInput,
        *,
        layers: Sequence[str] = (),
        selection: SelectionConfig | None = None,
        config: CacheConfig | None = None,
        fingerprint_extra: str = "",
    ) -> TeacherCache:
        """Select the subset and cache the teacher's outputs (or load a matching cache)."""
        selection = selection or SelectionConfig()
        config = config or CacheConfig()
        layers = tuple(layers) if config.outputs else ()
        if len(images) == 0:
            raise InputError("the test stream is empty; give a stream with images")
        digest = _fingerprint(teacher, images, layers, selection, config, fingerprint_extra)
        directory = Path(config.directory) if config.directory else None
        if directory is not None:
            loaded = _load(directory, digest)
            if loaded is not None:
                logger.info("reusing the teacher cache in %s (no teacher pass)", directory)
                return loaded
        builder = _Builder(teacher, images, to_input, layers, selection, config, directory)
        cache = builder.run()
        cache.meta = {"fingerprint": digest}
        if directory is not None:
            _save_meta(directory, cache, digest)
        return cache


def _fingerprint(teacher, images, layers, selection, config, extra: str) -> str:
    h = hashlib.sha256()
    for name, tensor in sorted(teacher.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    h.update(np.ascontiguousarray(images).tobytes())
    settings = {
        "layers": layers,
        "selection": asdict(selection),
        "views": config.views,
        "shift_px": config.shift_px,
        "outputs": config.outputs,
        "extra": extra,
    }
    h.update(json.dumps(settings, sort_keys=True).encode())
    return h.hexdigest()


class _Builder:
    def __init__(self, teacher, images, to_input, layers, selection, config, directory) -> None:
        device = resolve_device(config.device)
        self.teacher, self.images = on_device(teacher, device), images
        self.to_input = input_on(to_input, device)
        self.layers, self.selection, self.config = layers, selection, config
        self.directory = directory
        self.arrays: dict[str, np.ndarray] = {}
        self.forwards = 0
        if directory is not None:
            directory.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(FileNotFoundError):
                (directory / META).unlink()  # a half-built cache must never look complete

    def _alloc(self, name: str, shape: tuple[int, ...], dtype) -> np.ndarray:
        if name not in self.arrays:
            if self.directory is None:
                self.arrays[name] = np.zeros(shape, dtype=dtype)
            else:
                self.arrays[name] = np.lib.format.open_memmap(
                    self.directory / f"{name}.npy", mode="w+", dtype=dtype, shape=shape
                )
        return self.arrays[name]

    def _teacher(self, hooks: FeatureHooks | None, batch: np.ndarray) -> Features:
        self.forwards += len(batch)
        x = self.to_input(batch)
        out = Features(self.teacher(x)) if hooks is None else hooks.run(self.teacher, x)
        return Features(out.logits.cpu(), tuple(f.cpu() for f in out.features))

    def _store(self, view: int, slots: np.ndarray, out: Features) -> None:
        k, size = self.config.views, self.selection.size
        self._alloc("logits", (k, size, out.logits.shape[1]), np.float32)[view, slots] = (
            out.logits.float().numpy()
        )
        for i, f in enumerate(out.features):
            array = self._alloc(f"feature{i}", (k, size, *f.shape[1:]), np.float32)
            array[view, slots] = f.float().numpy()

    def run(self) -> TeacherCache:
        images, config, sel = self.images, self.config, self.selection
        rng = np.random.default_rng(sel.seed)
        order = rng.permutation(len(images))
        need_teacher = config.outputs or sel.strategy != "random"
        was_training = self.teacher.training
        self.teacher.eval()
        hooks = FeatureHooks(self.teacher, self.layers, what="teacher") if self.layers else None
        chosen: list[int] = []
        rejected: list[int] = []
        examined = 0
        try:
            with torch.inference_mode():
                selector = None
                for begin in range(0, len(order), config.batch_size):
                    if selector is not None and selector.full:
                        break
                    if not need_teacher and len(chosen) >= sel.size:
                        break
                    idx = order[begin : begin + config.batch_size]
                    if sel.strategy == "random":
                        idx = idx[: sel.size - len(chosen)]
                    if not need_teacher:
                        chosen.extend(idx[: sel.size - len(chosen)].tolist())
                        examined += len(idx)
                        continue
                    out = self._teacher(hooks, images[idx])
                    examined += len(idx)
                    if selector is None:
                        selector = Selector(sel, int(out.logits.shape[1]))
                    take = selector.offer(out.logits, len(idx))
                    slots = np.arange(len(chosen), len(chosen) + int(take.sum()))
                    if config.outputs and len(slots):
                        picked = Features(out.logits[take], tuple(f[take] for f in out.features))
                        self._store(0, slots, picked)
                    chosen.extend(idx[take].tolist())
                    rejected.extend(idx[~take].tolist())
                if sel.strategy == "balanced" and len(chosen) < sel.size and rejected:
                    fill = np.asarray(rejected[: sel.size - len(chosen)])
                    logger.info("balanced selection: filling %d samples beyond quotas", len(fill))
                    slots = np.arange(len(chosen), len(chosen) + len(fill))
                    if config.outputs:
                        self._store(0, slots, self._teacher(hooks, images[fill]))
                    chosen.extend(fill.tolist())
                n = len(chosen)
                if n < sel.size:
                    logger.warning(
                        "%s selection found %d of %d requested samples", sel.strategy, n, sel.size
                    )
                if n == 0:
                    raise InputError(
                        f"{sel.strategy} selection accepted no samples; raise entropy_fraction "
                        "or use --select random"
                    )
                indices = np.asarray(chosen, dtype=np.int64)
                views = self._alloc("images", (config.views, sel.size, *images.shape[1:]), np.uint8)
                views[0, :n] = images[indices]
                for v in range(1, config.views):
                    shifted = random_shift(
                        images[indices], config.shift_px, np.random.default_rng([sel.seed, v])
                    )
                    views[v, :n] = shifted
                    if config.outputs:
                        for b in range(0, n, config.batch_size):
                            slots = np.arange(b, min(n, b + config.batch_size))
                            self._store(v, slots, self._teacher(hooks, shifted[slots]))
        finally:
            if hooks is not None:
                hooks.close()
            self.teacher.train(was_training)
        self._alloc("indices", (sel.size,), np.int64)[:n] = indices
        arrays = {}
        for name, array in self.arrays.items():
            if isinstance(array, np.memmap):
                array.flush()
            arrays[name] = array[:n] if name == "indices" else array[:, :n]
        return TeacherCache(arrays, self.layers, self.forwards, examined)


def _save_meta(directory: Path, cache: TeacherCache, digest: str) -> None:
    meta = {
        "schema_version": SCHEMA_VERSION,
        "fingerprint": digest,
        "n": cache.num_samples,
        "layers": list(cache.layers),
        "arrays": sorted(cache.arrays),
        "teacher_forwards": cache.teacher_forwards,
        "examined": cache.examined,
    }
    with atomic_path(directory / META) as tmp:
        tmp.write_text(json.dumps(meta, indent=2))


def _load(directory: Path, digest: str) -> TeacherCache | None:
    meta_path = directory / META
    if not meta_path.is_file():
        return None
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    if meta.get("schema_version") != SCHEMA_VERSION or meta.get("fingerprint") != digest:
        logger.info(
            "teacher cache in %s is stale (other teacher/data/settings); rebuilding", directory
        )
        return None
    n, arrays = int(meta["n"]), {}
    for name in meta["arrays"]:
        path = directory / f"{name}.npy"
        if not path.is_file():
            return None
        array = np.load(path, mmap_mode="r")
        arrays[name] = array[:n] if name == "indices" else array[:, :n]
    meta = {**meta, "loaded_from": os.fspath(directory)}
    return TeacherCache(arrays, tuple(meta["layers"]), 0, 0, meta)
