"""Per-input limits of a request, each a setting (README table): a request over one is refused at once with a
413 naming the setting, instead of computing past Label Studio's timeouts.

Found by a hidden fuzzing run (issue 13): a 2 MB labeling config (100,000 labels) to /train got no answer in
30 s (a quadratic de-duplication in labelconfig.py took 50 s, fixed; the size limit keeps such configs out);
a 1 MB text to /predict computed until UIE_PREDICT_TIMEOUT (90 s), when Label Studio had long stopped
waiting (a text over UIE_MAX_TEXT_CHARS is now refused per task, regions.task_text); a config of 100,000 labels made one slice of /predict run for minutes, past any deadline check,
because every label is a model input of every window.
"""

from __future__ import annotations

from typing import Any, Sequence

from .config import Settings
from .labelconfig import Schema, parse_label_config


class LimitExceeded(Exception):
    """A request is over one of the per-input limits: a 413 whose message names the setting."""


def config_size(config: Any, settings: Settings) -> None:
    """A labeling config of at most ``UIE_MAX_CONFIG_KB`` (anything but a string is left to the parser)."""
    if isinstance(config, str):
        size = len(config.encode("utf-8", "replace"))
        if size > settings.max_config_kb * 1024:
            raise LimitExceeded(f"the labeling config is {size / 1024:,.0f} KB, over UIE_MAX_CONFIG_KB="
                                f"{settings.max_config_kb} KB")


def label_config(config: Any, settings: Settings, project_id: int | None = None) -> Schema:
    """The config's schema with ``project_id``'s prompts (``UIE_LABEL_PROMPTS``), refused before parsing when it
    is over ``UIE_MAX_CONFIG_KB``, and after it when it asks every text more than ``UIE_MAX_LABELS`` prompts
    (entity labels, and one per ``<Choices>``; relation predicates are asked only of the entities found, so
    DuEE's 186 labels and 121 predicates pass)."""
    config_size(config, settings)
    schema = parse_label_config(config, settings.prompts(project_id))
    labels = [*schema.labels, *(c.from_name for c in schema.choices)]
    if len(labels) > settings.max_labels:
        raise LimitExceeded(f"the labeling config has {len(labels):,} labels, over UIE_MAX_LABELS={settings.max_labels}"
                            " (each label is a model input for every text: predictions would take that many times "
                            "longer)")
    return schema


def prediction(tasks: Sequence[Any], settings: Settings) -> None:
    """A /predict request of at most ``UIE_MAX_TASKS`` tasks. (A text over ``UIE_MAX_TEXT_CHARS`` costs only
    its own task a prediction: regions.task_text.)"""
    if len(tasks) > settings.max_tasks:
        raise LimitExceeded(f"{len(tasks):,} tasks in one request, over UIE_MAX_TASKS={settings.max_tasks}: "
                            "select fewer tasks for Retrieve Predictions")
