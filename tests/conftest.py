"""Fixtures shared by the tests (the helpers themselves are in ``helpers.py``)."""
from __future__ import annotations

from pathlib import Path

import pytest

from helpers import write_golden_checkpoint


@pytest.fixture(scope="session")
def golden_checkpoint(tmp_path_factory: pytest.TempPathFactory):
    """``golden_checkpoint(case) -> Path``, each built once per session."""
    folder = tmp_path_factory.mktemp("checkpoints")
    made: dict[str, Path] = {}

    def get(case: str) -> Path:
        if case not in made:
            made[case] = write_golden_checkpoint(case, folder / f"{case}.pth")
        return made[case]

    return get
