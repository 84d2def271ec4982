"""The Label Studio ML backend: UIE pre-annotations for span labelling, fine-tuned on the project's annotations.

Served two ways, with the same class:

* ``make serve`` (gunicorn, ``_wsgi.py``): this repository's own Flask app (``uie_backend/server.py``), which
  runs training as background jobs and answers Label Studio within its time limits;
* ``label-studio-ml init NAME --script my_ml_backend.py`` + ``label-studio-ml start NAME``: label-studio-ml's
  generic app, which calls :meth:`UIEBackend.predict` and, for "Start Training", :meth:`UIEBackend.fit` in
  a child process of its own.
"""

from __future__ import annotations

import logging
import multiprocessing
import time
from pathlib import Path
from typing import Any

from label_studio_ml.model import LabelStudioMLBase

from uie_backend import lineages, predictor, regions, training
from uie_backend.config import Settings
from uie_backend.labelconfig import Schema, parse_label_config

log = logging.getLogger(__name__)

# label-studio-ml 1.0.9 runs fit() in a multiprocessing.Process of the default start method; forking a
# process that has loaded paddle segfaults, so its jobs must be spawned.
multiprocessing.set_start_method("spawn", force=True)


class UIEBackend(LabelStudioMLBase):
    """Pre-annotates the ``<Labels>``, ``<Relations>`` and ``<Choices>`` of text with UIE: the schema is the
    labeling config's (labelconfig.py)."""

    # label-studio-ml 1.0.9 would fine-tune on every annotation event; Label Studio 1.23's button sends this.
    TRAIN_EVENTS = ("START_TRAINING",)

    def __init__(self, label_config: str | None = None, train_output: dict | None = None,
                 project_id: int | None = None, schema: Schema | None = None, **kwargs: Any):
        self.settings = Settings.from_env()
        # a clear LabelConfigError before anything else, asked as the project asks it where the caller knows the
        # project (the server does; label-studio-ml's own loader does not: the global prompts, see schema_for).
        # The server passes the schema it has already checked, so a request parses its config once.
        self.prompts = self.settings.prompts(project_id)
        self.schema = schema if schema is not None else parse_label_config(label_config, self.prompts)
        super().__init__(label_config=label_config, train_output=train_output, **kwargs)

    @property
    def model_version(self) -> str:
        """The base model's version: what a project is served until it trains."""
        return lineages.base_source(self.settings).version

    def predict(self, tasks: list[dict], context: Any = None, **kwargs: Any) -> list[dict]:
        """One prediction per task, in order (label-studio-ml's contract); problems are logged.

        label-studio-ml's server does not pass the project on; Label Studio's tasks carry it.
        """
        project = tasks[0].get("project") if tasks and isinstance(tasks[0], dict) else None
        results, errors = self.predict_with_errors(
            tasks, context, project_id=project if isinstance(project, int) and not isinstance(project, bool) else None)
        for error in errors:
            log.warning("task %s: %s %s", error.task, error.field, error.message)
        return results

    def predict_with_errors(self, tasks: list[dict], context: Any = None, deadline: float | None = None,
                            project_id: int | None = None):
        """Predictions by the model ``project_id`` is served, plus the per-task problems (missing or
        non-string text) that produced empty ones; past ``deadline`` (``time.monotonic()``) it raises
        ``predictor.PredictionTimeout``."""
        model = predictor.for_project(self.settings, project_id)
        return regions.predict_tasks(tasks, self.schema_for(project_id), model, context, deadline,
                                     self.settings.max_text_chars, self.settings.ask_all_predicates)

    def schema_for(self, project_id: int | None) -> Schema:
        """The config's schema asked with ``project_id``'s prompts (``UIE_LABEL_PROMPTS``' ``projects``): the one
        parsed at ``__init__`` unless the project maps a value otherwise."""
        prompts = self.settings.prompts(project_id)
        if prompts == self.prompts:
            return self.schema
        return parse_label_config(self.label_config, prompts)

    def fit(self, tasks, workdir: str | None = None, **kwargs: Any) -> dict:
        """Fine-tune on ``tasks`` (annotated Label Studio tasks) or, when none are given, on the project's
        annotations pulled from Label Studio; the project is served the new model once it is better."""
        data = kwargs.get("data") or {}
        project = data.get("project") if isinstance(data.get("project"), dict) else {}
        request = training.TrainingRequest(
            label_config=self.label_config,
            project_id=project.get("id"),
            tasks=list(tasks) or None,
            label_studio_url=self.settings.label_studio_url or self.hostname,
            label_studio_token=self.settings.label_studio_api_key or self.access_token,
        )
        run_dir = Path(workdir) if workdir else self.settings.data_dir / "runs" / time.strftime("%Y%m%d-%H%M%S")
        return training.run(request, self.settings, run_dir)
