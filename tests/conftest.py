"""Shared fixtures: settings for the running local stack."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from consumers.doccano_client import DoccanoClient
from ctrlgpt import secrets
from ctrlgpt.settings import Settings
from deploy.workers import stop_workers


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # The end-to-end tests first, on the stack as a new user's `make demo` finds it: after the
    # other tests, the trainer would start with their label events on Kafka and no version, and
    # train on those (a start-up run of many minutes) before the loop's own run.
    items.sort(key=lambda item: item.get_closest_marker("e2e") is None)


@pytest.fixture(scope="session")
def settings() -> Settings:
    return Settings()


@pytest.fixture
def doccano(settings: Settings) -> Iterator[DoccanoClient]:
    """The admin's client of the running doccano."""
    client = DoccanoClient(
        settings.doccano_url, settings.doccano_username, secrets.load_or_create(settings.secrets_file).doccano_password
    )
    client.login()
    yield client
    client.close()


@pytest.fixture(scope="session", autouse=True)
def _no_demo_workers(request: pytest.FixtureRequest) -> None:
    # Tests that use the stack share the demo's broker and topics; the demo's workers would
    # consume what a test publishes and answer in its place. The end-to-end tests start their own:
    # session scope, so that this runs before their module fixtures start them, never after.
    if any(item.get_closest_marker(m) for item in request.session.items for m in ("integration", "e2e")):
        stop_workers(Settings())
