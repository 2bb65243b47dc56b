"""The local object store (s3proxy): its configuration, and the running one that `ctrlgpt services up` starts."""

from __future__ import annotations

import stat

import pytest
from botocore.exceptions import ClientError

from ctrlgpt import objectstore
from deploy.objectstore import server


def test_the_configuration_binds_loopback_keeps_buckets_under_the_data_dir_and_takes_the_secrets_keys(
    settings, tmp_path
):
    local = settings.model_copy(update={"data_dir": tmp_path, "objectstore_url": "http://127.0.0.1:19555"})
    keys = objectstore.credentials(local)
    values = dict(line.split("=", 1) for line in server.properties(local, tmp_path / "buckets").splitlines())
    assert values["s3proxy.endpoint"] == "http://127.0.0.1:19555"
    assert (values["s3proxy.identity"], values["s3proxy.credential"]) == (keys.access_key, keys.secret_key)
    assert (values["jclouds.provider"], values["jclouds.filesystem.basedir"]) == (
        "filesystem",
        str(tmp_path / "buckets"),
    )
    assert keys.access_key not in server.prepare(local)  # the keys are in the owner-only file, not on the command line
    config = server.home(local) / "s3proxy.properties"
    assert stat.S_IMODE(config.stat().st_mode) == 0o600


def test_an_endpoint_that_is_not_a_local_http_address_is_refused(settings):
    with pytest.raises(ValueError, match="http://HOST:PORT"):
        server.address(settings.model_copy(update={"objectstore_url": "https://s3.example.org"}))


@pytest.mark.integration
def test_the_running_store_answers_its_keys_only(settings):
    assert server.ready(settings)
    stranger = settings.model_copy(update={"objectstore_access_key": "stranger", "objectstore_secret_key": "wrong"})
    with pytest.raises(ClientError, match="InvalidAccessKeyId|SignatureDoesNotMatch|AccessDenied"):
        objectstore.client(stranger, timeout_s=5.0).list_buckets()
