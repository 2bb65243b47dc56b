"""Consumer-group names: Kafka keeps each service's committed offsets under them, operators watch lag by them."""

from __future__ import annotations

import re

from ctrlgpt.settings import Settings
from streams import groups


def test_the_services_groups_keep_the_names_their_offsets_are_committed_under():
    # A renamed group would start its service again from the beginning of its topics.
    assert (
        groups.CRAWLER,
        groups.CLEANER,
        groups.INDEX_SINK,
        groups.DOCCANO_SINK,
        groups.LABEL_BRIDGE,
        groups.TRAINER,
        groups.CONNECT,
    ) == (
        "ctrlgpt-crawler",
        "ctrlgpt-cleaner",
        "ctrlgpt-index",
        "ctrlgpt-doccano",
        "ctrlgpt-label-bridge",
        "ctrlgpt-trainer",
        "ctrlgpt-connect",
    )
    assert groups.trainer_commands(groups.TRAINER) == "ctrlgpt-trainer-commands"
    assert groups.api_replica("replica-a") == "ctrlgpt-api-replica-a"


def test_the_settings_that_rename_a_group_default_to_its_constant():
    defaults = {name: field.default for name, field in Settings.model_fields.items()}
    assert defaults["cleaner_app_id"] == groups.CLEANER
    assert defaults["es_sink_group"] == groups.INDEX_SINK
    assert defaults["label_bridge_group"] == groups.LABEL_BRIDGE
    assert defaults["trainer_group"] == groups.TRAINER
    assert defaults["connect_group"] == groups.CONNECT


def test_the_lag_report_selects_every_group_of_ctrlgpt_by_default():
    selected = re.compile(Settings.model_fields["ops_groups"].default)
    names = [
        groups.CRAWLER,
        groups.CLEANER,
        groups.INDEX_SINK,
        groups.DOCCANO_SINK,
        groups.LABEL_BRIDGE,
        groups.TRAINER,
        groups.CONNECT,
        groups.trainer_commands(groups.TRAINER),
        groups.api_replica("host-8080"),
    ]
    assert all(selected.match(name) for name in names)


def test_readers_that_never_commit_take_a_new_group_each_time():
    assert groups.snapshot_reader() != groups.snapshot_reader()
    assert groups.ops_observer() != groups.ops_observer()
    assert groups.snapshot_reader().startswith(groups.PREFIX) and groups.ops_observer().startswith(groups.PREFIX)
