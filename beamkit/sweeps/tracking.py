"""Experiment tracking in MLflow (``pip install beamkit[mlflow]``): a sweep is a parent run, each job a child.

Runs are logged from the sweep's own process as results come in, so workers need neither
mlflow nor a route to the tracking server. The tracking URI is MLflow's own
(``MLFLOW_TRACKING_URI`` or ``mlflow.set_tracking_uri``).
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

from ..errors import InvalidRequest

DEFAULT_EXPERIMENT = "beamkit"


class MlflowTracker:
    def __init__(self, sweep_name: str, experiment: str = DEFAULT_EXPERIMENT, params: dict[str, Any] | None = None) -> None:
        try:
            from mlflow.tracking import MlflowClient
        except ImportError:
            raise InvalidRequest("tracking in MLflow needs it installed: pip install 'beamkit[mlflow]'", "mlflow") from None
        from mlflow.entities import Metric, Param
        from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID, MLFLOW_RUN_NAME

        self._Metric, self._Param = Metric, Param
        self._parent_tag = MLFLOW_PARENT_RUN_ID
        self._name_tag = MLFLOW_RUN_NAME
        # MlflowClient, not mlflow's fluent API: rows arrive on the sweep's collector thread, and
        # fluent runs are per-thread global state.
        self.client = MlflowClient()
        found = self.client.get_experiment_by_name(experiment)
        self.experiment_id = found.experiment_id if found else self.client.create_experiment(experiment)
        parent = self.client.create_run(self.experiment_id, run_name=sweep_name, tags={"beamkit.sweep": sweep_name})
        self.parent_id = parent.info.run_id
        for key, value in (params or {}).items():
            self.client.log_param(self.parent_id, key, _short(value))

    def log_job(self, row: dict[str, Any], params: dict[str, Any], best_by_iteration: list[float]) -> str:
        """One child run for a row: its parameters, the best score per iteration, the best picture."""
        name = f"{row['config']} p{row['prompt_index']} s{row['seed']}"
        run = self.client.create_run(self.experiment_id, run_name=name, tags={
            self._parent_tag: self.parent_id, "beamkit.job_id": row["job_id"], "beamkit.status": str(row["status"])})
        run_id = run.info.run_id
        Metric, Param = self._Metric, self._Param
        now = int(time.time() * 1000)
        logged = {"config": row["config"], "prompt": row["prompt"], "seed": row["seed"],
                  "baseline": row.get("baseline") or "", **params}
        metrics = [Metric("best_total", float(score), now, step) for step, score in enumerate(best_by_iteration)]
        for key in ("alignment", "aesthetic", "images", "calls", "cost", "duration_s"):
            value = row.get(key)
            if isinstance(value, (int, float)) and not (isinstance(value, float) and math.isnan(value)):
                metrics.append(Metric(key, float(value), now, 0))
        # One batch per run: a file or database store pays per call, and a sweep has many runs.
        self.client.log_batch(run_id, metrics=metrics, params=[Param(k, _short(v)) for k, v in logged.items()])
        image = row.get("best_image")
        if image and Path(image).is_file():
            self.client.log_artifact(run_id, image, artifact_path="best")
        self.client.set_terminated(run_id, "FINISHED" if row["status"] == "completed" else "FAILED")
        return str(run_id)

    def finish(self, status: str) -> None:
        self.client.set_terminated(self.parent_id, "FINISHED" if status == "completed" else "KILLED")


def _short(value: Any) -> str:
    """MLflow caps a parameter at 6,000 characters; long prompts and settings are cut, not refused."""
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    return text[:6000]


__all__ = ["DEFAULT_EXPERIMENT", "MlflowTracker"]
