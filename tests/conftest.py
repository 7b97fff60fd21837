"""Shared fixtures."""

from __future__ import annotations

from typing import Any

import pytest
from helpers import BASE


@pytest.fixture
def anon_vseg() -> dict[str, Any]:
    return {"name": "heap", "type": "anon", "size": "1MiB", "base": BASE}
