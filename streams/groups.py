"""Consumer-group names: each defined once, beside the topics the groups read (streams.topics).

A group's name is where Kafka keeps its committed offsets: a service started under another name reads
its topics again from the start. Operators watch lag per group (`ctrlgpt lag`, the dashboard; see
docs/operations.md). Where a setting lets an operator run a service under another group (a second
index sink that re-reads the clean pages, say), the setting keeps its environment variable and takes the
constant below as its default; the services read the setting.
"""

from __future__ import annotations

import uuid

__all__ = [
    "CLEANER",
    "CONNECT",
    "CRAWLER",
    "DOCCANO_SINK",
    "INDEX_SINK",
    "LABEL_BRIDGE",
    "OPS_EXPORTER",
    "PREFIX",
    "TRAINER",
    "api_replica",
    "label_bridge_state_reader",
    "ops_observer",
    "snapshot_reader",
    "trainer_commands",
    "trainer_probe",
]

# Every ctrlgpt group starts with it: the lag report and /metrics select ctrlgpt's groups by it (`ops_groups`).
PREFIX = "ctrlgpt-"

# The crawler (producers.crawler) on CRAWL_REQUESTS.
CRAWLER = "ctrlgpt-crawler"
# The cleaner (streams.cleaner) on PAGES_RAW and its internal fingerprinted topic (streams.cleaner_topics):
# its faust app id (`cleaner_app_id`), which also names that topic and its table's changelog.
CLEANER = "ctrlgpt-cleaner"
# The index sink (consumers.search_index) on PAGES_CLEAN (`es_sink_group`).
INDEX_SINK = "ctrlgpt-index"
# The doccano sink (consumers.doccano_sink) on PAGES_CLEAN.
DOCCANO_SINK = "ctrlgpt-doccano"
# The label bridge (consumers.doccano_labels) on doccano's change topics (topics.doccano_change_topic)
# (`label_bridge_group`); also its transactional.id, and the prefix of its state topic's name.
LABEL_BRIDGE = "ctrlgpt-label-bridge"
# The trainer (trainer.worker) on LABELS (`trainer_group`); its commands: `trainer_commands`.
TRAINER = "ctrlgpt-trainer"
# The API replicas' lease on exporting the cluster-wide Kafka series (api.ops.exporter_lease): every replica
# joins it on MODEL_UPDATES's one partition, and the member Kafka assigns that partition exports. Never commits.
OPS_EXPORTER = "ctrlgpt-ops-exporter"
# The Kafka Connect cluster (deploy.connect) that runs Debezium (`connect_group`): its workers' group, which
# names Connect's internal topics; it consumes no ctrlgpt topic.
CONNECT = "ctrlgpt-connect"


def trainer_commands(trainer_group: str) -> str:
    """The trainer's group on TRAINING_COMMANDS, beside its labels' group: each topic has its own loop."""
    return f"{trainer_group}-commands"


def trainer_probe(trainer_group: str) -> str:
    """The trainer's start-up look at how many labels are on Kafka: never subscribes, never commits."""
    return f"{trainer_group}-probe"


def label_bridge_state_reader(label_bridge_group: str) -> str:
    """The label bridge's read of its own state topic at start: assigned, never commits."""
    return f"{label_bridge_group}-state-reader"


def api_replica(replica_id: str) -> str:
    """An API replica's group on MODEL_UPDATES, one per replica: every replica reads every update."""
    return f"ctrlgpt-api-{replica_id}"


def snapshot_reader() -> str:
    """A new group for each whole-topic read (streams.snapshot): assigned, never commits."""
    return f"ctrlgpt-train-reader-{uuid.uuid4().hex}"


def ops_observer() -> str:
    """A new group for each start of the API's ops events (TRAINING_RUNS, MODEL_UPDATES): never commits,
    so each start reads them afresh."""
    return f"ctrlgpt-ops-observer-{uuid.uuid4().hex}"
