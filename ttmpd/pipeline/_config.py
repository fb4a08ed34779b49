"""The settings of one ``ttmpd run``."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from ..errors import InputError

#: Fields that may change between a run and its ``--resume`` (they change no result).
VOLATILE = ("progress",)
#: Fields added after runs were first recorded, with the value those runs had: a signature
#: names them only when they differ, so older runs still resume.
ADDED = {"head_dims": False, "embedding": False, "device": 0}


@dataclass(frozen=True)
class RunConfig:
    """One TT-MPD job: prune ``model`` to ``budget`` of its latency on ``backend``, then
    distil it with one-time pseudo labels on ``finetune_samples`` unlabeled stream images.

    ``lut``: a device table to reuse (extended with what this model needs; it must come from
    this device and these backend settings), default ``OUT/lut.parquet``. The stream's
    labels, when present, are used only to report accuracy on the held-out rest.
    ``off_grid_per_unit``: LUT channel counts per unit off the ``channel_step`` grid (one per
    residue mod 8), so the predictor sees the misaligned counts pruning leaves.
    ``budget_checks``: how often the prune stage may search again when the measured pruned
    model misses the budget (0: trust the predictor).
    ``head_dims``, ``embedding``: the search may also prune attention head dims and
    LayerNorm-normalised widths (:class:`~ttmpd.pruning.GroupOptions`); attention heads and
    MLP widths are always offered. ``device``: the CUDA device index of a GPU backend
    (``torch-cuda``, ONNX Runtime's CUDA provider); search, adaptive BN, distillation and
    evaluation then compute on that GPU (the backend's ``compute_device``).
    """

    model: str
    data: str
    backend: str = "onnxruntime"
    budget: float = 0.5
    method: str = "ttmpd"
    lut: str | None = None
    threads: int = 1
    device: int = 0
    channel_step: int = 8
    off_grid_per_unit: int = 8
    calibrate_variants: int = 6
    finetune_samples: int = 512
    proxy_samples: int = 128
    budget_checks: int = 2
    importance: str = "l1"
    head_dims: bool = False
    embedding: bool = False
    loss: str = "kd:0.9,ce:0.1"
    epochs: int = 10
    batch_size: int = 64
    lr: float = 0.01
    online_teacher: bool = False
    seed: int = 0
    progress: bool = True

    def __post_init__(self) -> None:
        from ..profiler import BACKENDS
        from ..pruning import SearchConfig

        if self.backend not in BACKENDS:
            raise InputError(
                f"unknown backend {self.backend!r}; choose one of {', '.join(BACKENDS.names())}"
            )
        SearchConfig(budget=self.budget, method=self.method, importance=self.importance)
        self.distill_config()
        if isinstance(self.device, bool) or not isinstance(self.device, int) or self.device < 0:
            raise InputError(f"--device must be a CUDA device index >= 0, got {self.device!r}")
        for name in ("threads", "channel_step"):
            if getattr(self, name) < 1:
                raise InputError(f"--{name.replace('_', '-')} must be >= 1")
        for name in ("off_grid_per_unit", "calibrate_variants", "budget_checks"):
            if getattr(self, name) < 0:
                raise InputError(f"--{name.replace('_', '-')} must be >= 0")
        if self.finetune_samples < 8:
            raise InputError(f"--finetune-samples must be >= 8, got {self.finetune_samples}")
        if not 8 <= self.proxy_samples <= self.finetune_samples:
            raise InputError(
                f"--proxy-samples must be in [8, --finetune-samples], got {self.proxy_samples}"
            )

    def group_options(self):
        """The :class:`~ttmpd.pruning.GroupOptions` the prune stage searches with."""
        from ..pruning import GroupOptions

        return GroupOptions(head_dims=self.head_dims, embedding=self.embedding)

    def distill_config(self, device: str = "cpu"):
        """The :class:`~ttmpd.distill.DistillConfig` of the fine-tuning stage, computing on
        ``device`` (the backend's compute device)."""
        from ..distill import DistillConfig

        return DistillConfig(loss=self.loss, epochs=self.epochs, batch_size=self.batch_size,
                             lr=self.lr, seed=self.seed, online=self.online_teacher,
                             progress=self.progress, device=device)  # fmt: skip

    def signature(self) -> dict:
        """What must match for ``--resume`` to continue a run."""
        return {
            k: v
            for k, v in asdict(self).items()
            if k not in VOLATILE and not (k in ADDED and v == ADDED[k])
        }
