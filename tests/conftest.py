"""Shared fixtures: settings for the running local stack."""

from __future__ import annotations

import pytest

from ctrlgpt.settings import Settings


@pytest.fixture(scope="session")
def settings() -> Settings:
    return Settings()
