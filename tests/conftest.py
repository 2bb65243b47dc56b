"""Shared fixtures: settings for the running local stack."""

from __future__ import annotations

import pytest

from ctrlgpt.settings import Settings
from deploy.workers import stop_workers


@pytest.fixture(scope="session")
def settings() -> Settings:
    return Settings()


@pytest.fixture(scope="session", autouse=True)
def _no_demo_workers() -> None:
    # The tests share the demo's broker and topics; the demo's workers would consume
    # what a test publishes and answer in its place. The end-to-end test starts its own.
    stop_workers(Settings())
