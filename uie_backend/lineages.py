"""Which model each Label Studio project is served: a lineage of versions per project, over one base model.

Layout under ``UIE_CHECKPOINT_DIR``::

    model_best, versions/                    the base lineage (registry.py): what every project that has
                                             never trained is served, and what every run fine-tunes
    projects/<id>/model_best, versions/      project <id>'s own lineage: its versions, its active one

Training, activation and rollback in a project write only under ``projects/<id>/``, so nothing one project
does changes what another is served. A single-lineage install from before projects had lineages keeps
its ``model_best`` and ``versions/`` where they are: they are the base lineage now.

The base is, in order: ``UIE_TRAIN_FROM`` (a checkpoint directory), the base lineage's ``model_best``, the
PaddleNLP model named by ``UIE_MODEL``, the embedded offline model. Resolving costs a few ``stat`` calls and
one small JSON read, so it is done on every request: every server process, on every host sharing the
storage, follows an activation from its next request on.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from . import checkpoint, registry
from .config import Settings

PROJECTS = "projects"
BASE = "base"  # the version name that sends a project back to the base model (versions.py, /versions/base/activate)


class ModelUnavailable(RuntimeError):
    """No model can be loaded; the message tells the user what to do."""


@dataclass(frozen=True)
class ModelSource:
    version: str
    path: Path | None = None    # a checkpoint directory, or
    name: str | None = None     # a PaddleNLP model name

    def describe(self) -> str:
        return str(self.path) if self.path else f"PaddleNLP model {self.name!r}"


def project_dir(settings: Settings, project_id: int) -> Path:
    """The root of a project's lineage, for :mod:`registry` (``projects/<id>``)."""
    if isinstance(project_id, bool) or not isinstance(project_id, int) or project_id < 0:
        raise ValueError(f"a Label Studio project id is a non-negative integer, not {project_id!r}")
    return settings.checkpoint_dir / PROJECTS / str(project_id)


def activate(settings: Settings, project_id: int, version: str) -> registry.Version | None:
    """Serve ``version`` to the project, or the base again for :data:`BASE` (None then); other projects
    are untouched. Raises :class:`registry.VersionNotFound` for a version not in the project's lineage."""
    if version == BASE:
        registry.deactivate(project_dir(settings, project_id))
        return None
    return registry.activate(version, project_dir(settings, project_id))


def trained_projects(settings: Settings) -> list[int]:
    """The projects with a lineage of their own, in id order."""
    root = settings.checkpoint_dir / PROJECTS
    found = [int(p.name) for p in root.iterdir() if p.name.isdigit()] if root.is_dir() else []
    return sorted(found)


def source_for(settings: Settings, project_id: int | None) -> ModelSource:
    """What ``project_id`` is served now: its active version, else the base (also for ``None``)."""
    if project_id is not None:
        active = registry.active_path(project_dir(settings, project_id))
        if active is not None:
            checkpoint.check(active)
            return ModelSource(version=checkpoint.model_version(active), path=active)
    return base_source(settings)


def base_source(settings: Settings) -> ModelSource:
    """The model of every project that has not trained: see the module docstring for the order."""
    if settings.train_from:
        return _checkpoint_source(Path(settings.train_from))
    if settings.model_best.exists():
        return _checkpoint_source(settings.model_best.resolve())  # the immutable version model_best points at
    if settings.named_model:
        return ModelSource(version=settings.named_model, name=settings.named_model)
    if settings.default_model.name and checkpoint.is_complete(settings.default_model):
        return _checkpoint_source(settings.default_model)
    raise ModelUnavailable(
        f"no model to serve: put a fine-tuned UIE checkpoint (the five files of `finetune.py`'s output) in "
        f"{settings.model_best}, or set UIE_MODEL to a PaddleNLP UIE model name such as uie-base (needs internet once)")


def base_checkpoint(settings: Settings) -> Path:
    """The base as a checkpoint directory, which every training run fine-tunes.

    A model named by ``UIE_MODEL`` is the copy PaddleNLP downloaded when it was first served.
    """
    source = base_source(settings)
    if source.path is not None:
        return source.path
    downloaded = settings.ppnlp_home / "taskflow" / "information_extraction" / source.name
    if checkpoint.is_complete(downloaded):
        return downloaded
    raise ModelUnavailable(f"nothing to fine-tune from: {source.name!r} was never downloaded to {downloaded} "
                           f"(serve it once, online, to have PaddleNLP fetch it)")


def _checkpoint_source(path: Path) -> ModelSource:
    checkpoint.check(path)
    return ModelSource(version=checkpoint.model_version(path), path=path)
