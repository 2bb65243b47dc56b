"""Operations internals of an API replica: Kafka offsets and events sampled for /metrics and the dashboard."""
