"""doccano fixtures: an admin client and a sentiment project of the test's own, deleted afterwards."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from consumers.doccano_client import DoccanoClient
from ctrlgpt import secrets
from ctrlgpt.settings import Settings


@pytest.fixture
def doccano(settings: Settings) -> Iterator[DoccanoClient]:
    client = DoccanoClient(
        settings.doccano_url, settings.doccano_username, secrets.load_or_create(settings.secrets_file).doccano_password
    )
    client.login()
    yield client
    client.close()


@pytest.fixture
def project_settings(settings: Settings, doccano: DoccanoClient) -> Iterator[Settings]:
    """Settings whose doccano project is unique to this test."""
    name = f"ctrlgpt test {uuid.uuid4().hex[:10]}"
    yield settings.with_overrides([f"doccano_project={name}"])
    project = doccano.find_project(name)
    if project is not None:
        doccano.delete_project(project["id"])
