"""The storage and operations settings: invalid values stop start-up naming the variable."""

from __future__ import annotations

import pytest

from services.settings import ConfigError, load_settings
from services.storage import LocalImageStore, make_store


@pytest.mark.parametrize(("name", "value"), [
    ("STORAGE_URL", "s3://"), ("STORAGE_URL", "s3:///prefix-without-bucket"), ("S3_ENDPOINT_URL", "minio:9000"),
    ("STORAGE_PRESIGN", "perhaps"), ("LOG_FORMAT", "xml"), ("RETENTION_DAYS", "7"),
])
def test_invalid_values_name_the_variable(tmp_path, name, value):
    with pytest.raises(ConfigError, match=name):
        load_settings(env_file=None, DATA_DIR=str(tmp_path), **{name: value})


def test_store_follows_storage_url(tmp_path):
    local = make_store(load_settings(env_file=None, DATA_DIR=str(tmp_path)))
    assert isinstance(local, LocalImageStore) and local.root == tmp_path / "images"
    s3 = make_store(load_settings(env_file=None, DATA_DIR=str(tmp_path), STORAGE_URL="s3://team-images/studio/",
                                  S3_ENDPOINT_URL="http://127.0.0.1:9000", AWS_DEFAULT_REGION="eu-west-1"))
    assert (s3.bucket, s3.prefix, s3.client.meta.region_name) == ("team-images", "studio", "eu-west-1")
    assert s3.describe() == "S3 (s3://team-images/studio/ at http://127.0.0.1:9000)"
