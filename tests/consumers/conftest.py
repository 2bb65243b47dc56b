"""doccano fixtures: an admin client and a sentiment project of the test's own, deleted afterwards."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from consumers.doccano_client import DoccanoClient
from ctrlgpt.settings import Settings


@pytest.fixture
def project_settings(settings: Settings, doccano: DoccanoClient) -> Iterator[Settings]:
    """Settings whose doccano projects are unique to this test."""
    unique = uuid.uuid4().hex[:10]
    names = {
        "doccano_project": f"ctrlgpt test {unique}",
        "doccano_expansion_project": f"ctrlgpt test expansions {unique}",
        "doccano_comparison_project": f"ctrlgpt test comparisons {unique}",
    }
    yield settings.with_overrides([f"{field}={name}" for field, name in names.items()])
    for name in names.values():
        project = doccano.find_project(name)
        if project is not None:
            doccano.delete_project(project["id"])
