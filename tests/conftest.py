"""Shared pytest fixtures."""

import pathlib

import pytest


@pytest.fixture(scope="session")
def shared_data_dir():
    """``<repo>/../shared/data``, which holds the real mnist/ and fashion-mnist/ IDX .gz files."""
    path = pathlib.Path(__file__).resolve().parents[1].parent / "shared" / "data"
    if not path.is_dir():
        pytest.fail(f"shared data folder {path} is missing: it must hold mnist/ and fashion-mnist/ with the four IDX .gz files each")
    return path
