"""``UIE_LABEL_PROMPTS``: the prompt UIE is asked for a label, relation or choice value, for every project or
for one (labelconfig.parse_label_config reads the result; a tag's ``predicted_values`` wins over both).

The setting is a JSON object, inline or in a file; its value -> prompt entries hold for every project, and
the reserved key ``"projects"`` holds a project's own, which win over them value by value::

    {"PER": "人名", "LOC": "地名", "projects": {"3": {"PER": "人物"}}}

A file is read again on every request, so an edit applies without a restart. The start-up parse fails
loudly on a bad file; later, a file that has become unreadable or invalid must not turn every request into a
500, so the last mapping read well from the same setting is kept, with one warning per new problem.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

log = logging.getLogger(__name__)

PROJECTS = "projects"
_PROJECT_ID = re.compile(r"[0-9]+")  # not str.isdigit: it takes "３" and "²", which are no Label Studio id


@dataclass(frozen=True)
class LabelPrompts:
    """The parsed setting: the mapping of every project, and each project's own entries."""

    default: Mapping[str, str] = field(default_factory=dict)
    projects: Mapping[int, Mapping[str, str]] = field(default_factory=dict)

    def for_project(self, project_id: int | None) -> dict[str, str]:
        """Value -> prompt for ``project_id`` (None: no project, the global entries only)."""
        return {**self.default, **self.projects.get(project_id, {})}


# the last good parse of each setting value seen: what a file broken at run time falls back to
_last_good: dict[str, LabelPrompts] = {}
_warned: dict[str, str] = {}  # the problem last logged per setting value, so each is logged once


def load(setting: str) -> LabelPrompts:
    """``setting`` parsed; if it cannot be now but could be before in this process, its last good parse.

    Raises ValueError, naming the problem, when it has never been good: at start-up, that is."""
    try:
        parsed = parse(setting)
    except ValueError as exc:
        good = _last_good.get(setting)
        if good is None:
            raise
        if _warned.get(setting) != str(exc):
            _warned[setting] = str(exc)
            log.warning("%s; the last mapping read from it stays in use until it is fixed", exc)
        return good
    _last_good[setting] = parsed
    _warned.pop(setting, None)  # fixed: the next problem is news again
    return parsed


def parse(setting: str) -> LabelPrompts:
    """The setting (inline JSON or a file's path) read and checked; ValueError says what is wrong and where."""
    raw = setting.strip()
    if not raw:
        return LabelPrompts()
    where = "UIE_LABEL_PROMPTS"
    if not raw.startswith(("{", "[")):  # inline JSON; anything else names a file
        where = f"UIE_LABEL_PROMPTS file {raw}"
        try:
            raw = Path(raw).expanduser().read_text(encoding="utf-8-sig")
        except OSError as exc:
            raise ValueError(f"{where}: cannot be read ({exc.strerror or exc})") from None
    try:
        mapping = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{where}: not JSON ({exc.msg}, line {exc.lineno})") from None
    if not isinstance(mapping, dict):
        raise ValueError(f"{where}: must be a JSON object of label value -> prompt")
    projects = mapping.pop(PROJECTS, {})
    if not isinstance(projects, dict):
        raise ValueError(f'{where}: "{PROJECTS}" must be an object of Label Studio project id -> its own '
                         f'{{label value: prompt}}, e.g. {{"3": {{"PER": "人物"}}}}, not {projects!r} (the key is '
                         f"reserved: a value named {PROJECTS!r} takes its prompt from predicted_values)")
    return LabelPrompts(_prompts(mapping, where, top=True), _projects(projects, where))


def _projects(projects: dict[str, Any], where: str) -> dict[int, dict[str, str]]:
    parsed: dict[int, dict[str, str]] = {}
    for key, mapping in projects.items():
        if not _PROJECT_ID.fullmatch(key.strip()):
            raise ValueError(f'{where}: "{PROJECTS}" key {key!r} is not a Label Studio project id (an integer, '
                             f'e.g. "3")')
        project_id = int(key)
        if project_id in parsed:  # "3" and "03"
            raise ValueError(f'{where}: project {project_id} is given twice in "{PROJECTS}"')
        if not isinstance(mapping, dict):
            raise ValueError(f"{where}: project {project_id} must map label values to prompts (a JSON object), "
                             f"not {mapping!r}")
        parsed[project_id] = _prompts(mapping, f"{where}: project {project_id}")
    return parsed


def _prompts(mapping: dict[str, Any], where: str, top: bool = False) -> dict[str, str]:
    for value, prompt in mapping.items():
        if not isinstance(prompt, str) or not prompt.strip():
            # {"3": {"PER": "人物"}} is the likeliest guess at a project's entry: say where it goes
            hint = (f' (a project\'s own prompts go in {{"{PROJECTS}": {{"{value}": {{...}}}}}})'
                    if top and isinstance(prompt, dict) else "")
            raise ValueError(f"{where}: the prompt of {value!r} must be a non-empty string, not {prompt!r}{hint}")
    return {value: prompt.strip() for value, prompt in mapping.items()}
