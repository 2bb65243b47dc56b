import pytest

from deploy.doccano import server


def test_address_comes_from_the_url():
    assert server.http_address("http://127.0.0.1:8000") == ("127.0.0.1", 8000)


def test_port_must_be_explicit():
    with pytest.raises(ValueError, match="HOST:PORT"):
        server.http_address("http://127.0.0.1")


def test_secret_key_is_made_once_and_private(tmp_path):
    first = server.secret_key(tmp_path)
    assert len(first) >= 50
    assert server.secret_key(tmp_path) == first
    assert (tmp_path / "secret-key").stat().st_mode & 0o777 == 0o600
