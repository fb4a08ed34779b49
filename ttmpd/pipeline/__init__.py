"""The whole TT-MPD job: profile, predict, prune, distil, evaluate, export, measure, report.

``run_pipeline(RunConfig(...), out)`` runs the stages of :mod:`ttmpd.pipeline._stages`
into one folder and resumes stage by stage. This package chains every stage; no stage
package imports it.
"""

from ._config import RunConfig as RunConfig
from ._export import ExportCheck as ExportCheck
from ._export import export_checked_onnx as export_checked_onnx
from ._stages import STAGES as STAGES
from ._stages import Run as Run
from ._stages import RunInterrupted as RunInterrupted
from ._stages import distill_student as distill_student
from ._stages import run_pipeline as run_pipeline
from ._stages import search_budget as search_budget
from ._state import RunState as RunState

__all__ = [
    "STAGES",
    "ExportCheck",
    "Run",
    "RunConfig",
    "RunInterrupted",
    "RunState",
    "distill_student",
    "export_checked_onnx",
    "run_pipeline",
    "search_budget",
]
