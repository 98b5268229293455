"""Fixtures of the sweep tests: a sweep directory holding the hand-checked sweep.json of ``handmade``."""

from __future__ import annotations

from pathlib import Path

import pytest

from .handmade import hand_sweep


@pytest.fixture
def sweep_dir(tmp_path) -> Path:
    from edgekit.artifacts import write_json

    write_json(tmp_path / "sweep.json", hand_sweep())
    return tmp_path
