"""Shared fixtures."""

from __future__ import annotations

from typing import Any

import pytest
from helpers import BASE


@pytest.fixture
def anon_vseg() -> dict[str, Any]:
    return {"name": "heap", "type": "anon", "size": "1MiB", "base": BASE}


@pytest.fixture(params=["compiled", "reference"])
def engine(request: pytest.FixtureRequest):
    """Run the test once per ``sim.engine`` (for whole-simulation tests of the host, whose
    scenarios the compiled core covers): each engine must give the hand-worked counts."""
    import helpers

    helpers.ENGINE = request.param
    yield request.param
    helpers.ENGINE = None
