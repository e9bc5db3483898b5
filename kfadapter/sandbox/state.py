"""The sandbox's in-memory KFP: pipelines, versions, experiments, runs, request counters and faults.

The parts live beside it: `state_base` (lock, clock, counters, faults), `state_catalog` (pipelines, versions,
experiments) and `state_runs` (runs and artifacts).
"""

from __future__ import annotations

from kfadapter.sandbox.state_base import DEFAULT_EXPERIMENT, STATES, TERMINAL
from kfadapter.sandbox.state_runs import RunState


class SandboxState(RunState):
    """All sandbox data, guarded by one lock."""


__all__ = ["DEFAULT_EXPERIMENT", "STATES", "TERMINAL", "SandboxState"]
