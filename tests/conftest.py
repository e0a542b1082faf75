"""Shared pytest fixtures.

``shared`` points at ../shared (the read-only reference data beside the checkout, or the folder
named by FACECAST_SHARED). Tests that need it skip when it is missing, except under CI=true,
where a missing fixture is a failure.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def shared_path() -> Path:
    return Path(os.environ.get("FACECAST_SHARED", REPO.parent / "shared")).resolve()


def require_shared(*parts: str) -> Path:
    """Path inside ../shared; skip (or fail under CI=true) when it is missing."""
    p = shared_path().joinpath(*parts)
    if not p.exists():
        msg = f"shared fixture missing: {p}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(msg)
        pytest.skip(msg)
    return p


@pytest.fixture
def shared() -> Path:
    return require_shared()
