import stat
import zipfile

import pytest
import yaml

from ctrlgpt.settings import Settings
from deploy.elasticsearch import node


def test_http_address_comes_from_the_url():
    assert node.http_address("http://127.0.0.1:9201") == ("127.0.0.1", 9201)
    assert node.http_address("http://localhost") == ("localhost", 9200)


def test_http_address_refuses_https():
    with pytest.raises(ValueError, match="http://"):
        node.http_address("https://127.0.0.1:9200")


def test_elasticsearch_yml_is_one_local_node_without_security(tmp_path):
    settings = Settings(data_dir=tmp_path, es_url="http://127.0.0.1:9201")
    config = yaml.safe_load(node.elasticsearch_yml(settings))
    assert config["discovery.type"] == "single-node"
    assert config["network.host"] == "127.0.0.1"
    assert config["http.port"] == 9201
    assert config["xpack.security.enabled"] is False
    assert config["path.data"] == str(tmp_path / "elasticsearch" / "data")
    assert config["path.logs"] == str(tmp_path / "elasticsearch" / "logs")


def test_jvm_options_keep_every_file_under_the_logs_dir(tmp_path):
    options = node.jvm_options(Settings(data_dir=tmp_path)).splitlines()
    logs = tmp_path / "elasticsearch" / "logs"
    assert "-Xms512m" in options and "-Xmx1g" in options
    assert f"-XX:ErrorFile={logs}/hs_err_pid%p.log" in options
    assert any(f"file={logs}/gc.log" in option for option in options)


def test_extract_keeps_executable_bits(tmp_path):
    archive = tmp_path / "dist.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        script = zipfile.ZipInfo("elasticsearch-1/bin/elasticsearch")
        script.external_attr = (stat.S_IFREG | 0o755) << 16
        bundle.writestr(script, "#!/bin/sh\n")
        bundle.writestr("elasticsearch-1/config/elasticsearch.yml", "")
    target = tmp_path / "es" / "elasticsearch-1"
    target.parent.mkdir()
    node.extract(archive, target)
    assert (target / "bin" / "elasticsearch").stat().st_mode & 0o777 == 0o755
    assert (target / "config" / "elasticsearch.yml").exists()
    assert sorted(p.name for p in target.parent.iterdir()) == ["elasticsearch-1"]
