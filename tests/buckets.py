"""Buckets of a test's own on the stack's object store, removed afterwards."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from ctrlgpt import objectstore
from ctrlgpt.settings import Settings


@contextmanager
def own_bucket(settings: Settings, prefix: str) -> Iterator[str]:
    """A fresh bucket name (created by whoever publishes first); the bucket and its objects go at the end."""
    name = f"{prefix}-{uuid.uuid4().hex[:12]}"
    try:
        yield name
    finally:
        client = objectstore.client(settings)
        if name in {found["Name"] for found in client.list_buckets()["Buckets"]}:
            pages = client.get_paginator("list_objects_v2").paginate(Bucket=name)
            for item in (item for page in pages for item in page.get("Contents", [])):
                if not item["Key"].endswith("/"):  # s3proxy's directory markers go with their last file
                    client.delete_object(Bucket=name, Key=item["Key"])
            client.delete_bucket(Bucket=name)
