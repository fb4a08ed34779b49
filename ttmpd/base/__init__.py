"""Base models of the test-time scenario: train one on the source split, measure its
accuracy on the clean and corrupted test streams.

``inputs`` (uint8 images + checkpoint normalisation -> model input, used everywhere) ->
``train`` (``train_base``) and ``evaluate`` (``evaluate``, ``robustness_table``) ->
``heatmap`` (PNG of a robustness table). ``reference_checkpoint_path()`` locates the shipped
ResNet-20 trained on MNIST. Nothing is read at import time.
"""

from .evaluate import CLEAN as CLEAN
from .evaluate import COLUMNS as COLUMNS
from .evaluate import check_compatible as check_compatible
from .evaluate import evaluate as evaluate
from .evaluate import inference_copy as inference_copy
from .evaluate import predict as predict
from .evaluate import resolve_corruptions as resolve_corruptions
from .evaluate import resolve_severities as resolve_severities
from .evaluate import robustness_table as robustness_table
from .evaluate import summarize as summarize
from .heatmap import accuracy_grid as accuracy_grid
from .heatmap import save_heatmap as save_heatmap
from .inputs import channel_stats as channel_stats
from .inputs import check_input_channels as check_input_channels
from .inputs import to_model_input as to_model_input
from .reference import reference_checkpoint_path as reference_checkpoint_path
from .train import TrainConfig as TrainConfig
from .train import TrainingInterrupted as TrainingInterrupted
from .train import TrainResult as TrainResult
from .train import train_base as train_base

__all__ = [
    "CLEAN",
    "COLUMNS",
    "TrainConfig",
    "TrainResult",
    "TrainingInterrupted",
    "accuracy_grid",
    "channel_stats",
    "check_compatible",
    "check_input_channels",
    "evaluate",
    "inference_copy",
    "predict",
    "reference_checkpoint_path",
    "resolve_corruptions",
    "resolve_severities",
    "robustness_table",
    "save_heatmap",
    "summarize",
    "to_model_input",
    "train_base",
]
