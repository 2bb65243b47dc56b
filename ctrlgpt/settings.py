"""The one settings object of ctrlgpt.

Every service reads it once at its entry point (`Settings()`), from environment
variables prefixed `CTRLGPT_` (for example `CTRLGPT_KAFKA_BOOTSTRAP`), then CLI flags
override single fields (`ctrlgpt --set kafka_bootstrap=host:9092 ...`). The defaults
run everything offline on one machine, with all state under `data_dir`.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parents[1]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CTRLGPT_", frozen=True, extra="forbid")

    data_dir: Path = Field(REPO_ROOT / ".data", description="All state: broker logs, indices, doccano, models, secrets.")
    log_level: str = Field("INFO", description="Python logging level of every service.")

    # Kafka
    kafka_bootstrap: str = Field("127.0.0.1:9092", description="Kafka bootstrap servers.")
    kafka_controller_port: int = Field(9093, description="KRaft controller port of the local broker.")
    kafka_java_home: Path = Field(Path("/usr/lib/jvm/java-17-openjdk-amd64"), description="JDK that runs the local broker.")
    topic_partitions: int = Field(3, ge=1, description="Partitions of the data topics when ctrlgpt creates them.")
    topic_replication: int = Field(1, ge=1, description="Replication factor when ctrlgpt creates topics.")

    # Elasticsearch
    es_url: str = Field("http://127.0.0.1:9200", description="Elasticsearch URL.")
    es_index: str = Field("ctrlgpt-pages", description="Index (alias) holding clean pages.")
    es_sink_group: str = Field("ctrlgpt-index", description="Consumer group of the index sink (another one re-reads the clean pages from the start).")
    es_version: str = Field("8.19.21", description="Elasticsearch server version fetched from Maven Central.")
    es_java_home: Path = Field(Path("/usr/lib/jvm/java-17-openjdk-amd64"), description="JDK that runs Elasticsearch.")
    es_user: str = Field("ctrlgpt-es", description="Dedicated non-root user that runs Elasticsearch.")

    # doccano
    doccano_url: str = Field("http://127.0.0.1:8000", description="doccano URL.")
    doccano_username: str = Field("admin", description="doccano admin user; its password lives in the secrets file.")
    doccano_project: str = Field("ctrlgpt sentiment", description="doccano project of passages to label for sentiment.")
    doccano_poll_seconds: float = Field(2.0, gt=0, description="How often the label bridge polls doccano.")
    doccano_expansion_project: str = Field("ctrlgpt expansions", description="doccano seq2seq project: page title and summary -> body, for review.")
    doccano_comparison_project: str = Field("ctrlgpt comparisons", description="doccano project ranking two generations: A better, B better, tie.")

    # Crawler
    user_agent: str = Field("ctrlgpt-crawler/0.1 (+https://github.com/ctrlgpt)", description="User-Agent the crawler sends.")
    chromium_path: Path = Field(Path("/usr/bin/chromium"), description="Chromium binary Playwright drives.")
    crawl_max_depth: int = Field(2, ge=0, description="Links followed from a seed, at most.")
    crawl_max_pages: int = Field(200, ge=1, description="Pages fetched per site and crawl, at most.")
    fetch_timeout_s: float = Field(20.0, gt=0, description="Page load timeout.")
    fetch_retries: int = Field(3, ge=0, description="Retries of a failed page load before it is dead-lettered.")
    fetch_backoff_s: float = Field(1.0, ge=0, description="First retry delay of a failed page load; doubles on each retry.")
    crawl_delay_s: float = Field(0.2, ge=0, description="Least time between two fetches from one host (robots.txt Crawl-delay wins if larger).")
    retry_after_max_s: float = Field(30.0, ge=0, description="Longest pause of a host that answered 429/503 with Retry-After (a batch must finish within max.poll.interval.ms).")
    crawl_browser_pages: int = Field(4, ge=1, description="Browser pages the crawler renders at once (one browser context).")
    crawl_per_origin_concurrency: int = Field(1, ge=1, description="Fetches in flight per origin, at most (different origins go in parallel).")

    # Cleaner
    cleaner_app_id: str = Field("ctrlgpt-cleaner", description="faust app id of the cleaner, also its consumer group.")
    clean_min_chars: int = Field(200, ge=1, description="Pages whose main text is shorter are dead-lettered.")
    cleaner_session_timeout_s: float = Field(15.0, gt=0, description="A cleaner worker silent this long (killed, hung) loses its partitions to the others.")
    near_duplicate_max_bits: int = Field(6, ge=0, le=63, description="SimHash bits two pages may differ by and still be near duplicates.")

    # Demo site
    demo_site_port: int = Field(8090, description="Port of the local demo website.")

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
    target_sentiment: str = Field("positive", description="Sentiment PPO steers toward; the default target of a request.")
    targets: str = Field(
        "positive",
        description="Comma-separated sentiments (labels of the sentiment project) the trainer keeps a policy for; "
        "a request picks one. Must include target_sentiment.",
    )
    sft_epochs: float = Field(20.0, gt=0, description="Epochs of SFT over the expansion pairs.")
    reward_epochs: float = Field(4.0, gt=0, description="Epochs of reward-model training.")
    ppo_episodes: int = Field(128, ge=1, description="Total PPO episodes of one run.")
    seed: int = Field(0, description="Random seed of training.")
    rl_algorithm: str = Field("ppo", description="RL stage after SFT and the reward model; only 'ppo' exists so far.")
    ppo_kl_coef: float = Field(0.05, ge=0, description="Weight of the per-token KL penalty to the SFT reference in PPO.")
    gate_reward_margin: float = Field(0.05, description="Mean reward the candidate must gain over the baseline to be promoted.")
    gate_max_kl: float = Field(0.5, gt=0, description="Largest mean per-token KL to the SFT reference a promoted policy may have.")

    # API
    api_host: str = Field("127.0.0.1", description="Interface the API binds.")
    api_port: int = Field(8080, description="Port the API binds.")
    max_prompt_chars: int = Field(2000, ge=1, description="Longest prompt the API accepts.")
    max_new_tokens_limit: int = Field(256, ge=1, description="Largest max_new_tokens a request may ask for.")
    policy_name: str = Field("expansion-policy", description="Name the trainer announces versions under and the API serves (key on the model-updates topic).")
    api_replica_id: str | None = Field(None, description="Id of this API replica (its own consumer group); unset: hostname-port.")

    @property
    def secrets_file(self) -> Path:
        return self.data_dir / "secrets.json"

    @property
    def registry_dir(self) -> Path:
        return self.data_dir / "models"

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

    def with_overrides(self, pairs: list[str]) -> "Settings":
        """Apply `name=value` pairs from the command line; unknown names are refused."""
        values = self.model_dump()
        for pair in pairs:
            name, sep, value = pair.partition("=")
            if not sep or name not in type(self).model_fields:
                raise ValueError(f"--set expects NAME=VALUE with a known setting name, got {pair!r}")
            values[name] = value
        return type(self).model_validate(values)
