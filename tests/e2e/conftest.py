"""Fixtures for end-to-end tests against a real Label Studio (see tests/e2e/labelstudio.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .labelstudio import LabelStudio, ensure_installed


def pytest_configure(config: pytest.Config) -> None:
    """Register the marker here too, so `-m e2e` works without warnings whatever pytest.ini says."""
    config.addinivalue_line("markers", "e2e: starts a real Label Studio server (slow, needs .venv-ls)")


@pytest.fixture(scope="session")
def label_studio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabelStudio]:
    """One Label Studio per test session: the first start migrates a fresh SQLite (~20-30 s).

    Tests isolate themselves by creating their own projects, not their own servers.
    """
    install_s = ensure_installed()
    if install_s is not None:
        print(f"\nInstalled Label Studio into .venv-ls in {install_s:.1f} s")
    server = LabelStudio.start(tmp_path_factory.mktemp("label-studio"))
    print(f"\nLabel Studio started at {server.url} in {server.startup_s:.1f} s (log: {server.log_path})")
    yield server
    server.stop()
