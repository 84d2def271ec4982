"""Model versions on disk: every finished run is kept, one of them is active, switching is atomic.

One registry is one lineage; its root is ``UIE_CHECKPOINT_DIR`` for the base lineage and
``UIE_CHECKPOINT_DIR/projects/<id>`` for a project's own (lineages.py). Layout under a root::

    versions/<version>/      a complete checkpoint + uie_meta.json + report.md; never changed once written
    model_best -> versions/<version>    the active one: a symlink, replaced by rename()

A version directory is copied in under a temporary name and renamed into place only when complete, and the
symlink is switched with ``os.replace``, so a crash at any instant leaves ``model_best`` pointing at a whole,
loadable model. A ``model_best`` that is a plain directory (a checkpoint a user dropped in) is moved into
the registry as a version of its own the first time another version is activated, so it is never lost.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from . import checkpoint


VERSION_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")


class VersionNotFound(LookupError):
    """No such version in the registry; the message lists the ones there are."""


@dataclass(frozen=True)
class Version:
    id: str
    path: Path
    meta: dict
    active: bool

    def to_dict(self) -> dict:
        dev = (self.meta.get("dev") or {}).get("overall") or {}
        return {"version": self.id, "active": self.active, "created_at": self.meta.get("created_at"),
                "tasks": self.meta.get("tasks"), "dev_f1": dev.get("f1"), "dev_support": dev.get("support"),
                "project": self.meta.get("project"), "run": self.meta.get("run"),
                "init_from": self.meta.get("init_from")}


def versions_dir(checkpoint_dir: Path) -> Path:
    return Path(checkpoint_dir) / "versions"


def active_path(checkpoint_dir: Path) -> Path | None:
    """The real directory ``model_best`` stands for, or None when there is no active model."""
    best = Path(checkpoint_dir) / "model_best"
    return best.resolve() if best.exists() else None


def add(model_dir: Path, checkpoint_dir: Path) -> Version:
    """Copy a finished checkpoint into the registry under its version id (idempotent)."""
    model_dir = Path(model_dir)
    checkpoint.check(model_dir)
    version = checkpoint.model_version(model_dir)
    root = versions_dir(checkpoint_dir)
    root.mkdir(parents=True, exist_ok=True)
    target = root / version
    if not target.exists():
        staging = Path(tempfile.mkdtemp(prefix=f".incoming-{version}.", dir=root))
        try:
            shutil.copytree(model_dir, staging, dirs_exist_ok=True, symlinks=False)
            os.chmod(staging, 0o755)
            os.rename(staging, target)
        except OSError:
            if not checkpoint.is_complete(target):  # else another process added this very version first
                raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)  # a failed copy's remains (gone already after the rename)
    return _version(target, checkpoint_dir)


def activate(version: str, checkpoint_dir: Path) -> Version:
    """Make ``version`` the served model: one atomic rename of a symlink."""
    checkpoint_dir = Path(checkpoint_dir)
    target = versions_dir(checkpoint_dir) / version
    # a version is a name in versions/, never a path: "..", "/" or a hidden staging directory are not
    if not VERSION_NAME.fullmatch(version) or not checkpoint.is_complete(target):
        raise VersionNotFound(f"no version {version!r}; there are: {', '.join(v.id for v in list_versions(checkpoint_dir)) or 'none'}")
    best = checkpoint_dir / "model_best"
    with checkpoint.locked(best):
        if best.is_dir() and not best.is_symlink():  # a hand-placed checkpoint: keep it as a version
            _import_plain_dir(best, checkpoint_dir)
        link = checkpoint_dir / f".model_best.{os.getpid()}.{time.time_ns()}"
        os.symlink(os.path.relpath(target, checkpoint_dir), link)
        os.replace(link, best)
    return _version(target, checkpoint_dir)


def deactivate(checkpoint_dir: Path) -> None:
    """Serve no version of this lineage: a project's requests then go to the base (lineages.py).

    Removing a symlink is atomic; a hand-placed plain ``model_best`` is kept as a version first.
    """
    checkpoint_dir = Path(checkpoint_dir)
    best = checkpoint_dir / "model_best"
    with checkpoint.locked(best):
        if best.is_dir() and not best.is_symlink():
            _import_plain_dir(best, checkpoint_dir)
        elif best.is_symlink():
            os.unlink(best)


def list_versions(checkpoint_dir: Path) -> list[Version]:
    """All versions, newest first (version ids start with their creation time)."""
    root = versions_dir(checkpoint_dir)
    # model_best and the folder resolved once, not once per version: 400 resolve() calls made half the time
    # of listing 200 versions (bench/page.py)
    active, real_root = active_path(checkpoint_dir), root.resolve()
    found = [Version(p.name, p, checkpoint.read_meta(p), active == real_root / p.name) for p in root.iterdir()
             if not p.name.startswith(".") and p.is_dir()] if root.is_dir() else []
    best = Path(checkpoint_dir) / "model_best"
    if best.is_dir() and not best.is_symlink():  # hand-placed, not (yet) in versions/
        found.append(Version(checkpoint.model_version(best), best, checkpoint.read_meta(best), True))
    return sorted(found, key=lambda v: (v.meta.get("created_at") or "", v.id), reverse=True)


def _version(path: Path, checkpoint_dir: Path) -> Version:
    return Version(path.name, path, checkpoint.read_meta(path), active_path(checkpoint_dir) == path.resolve())


def _import_plain_dir(best: Path, checkpoint_dir: Path) -> None:
    version = checkpoint.model_version(best)
    target = versions_dir(checkpoint_dir) / version
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists():
        shutil.rmtree(best)
    else:
        os.rename(best, target)
