import pytest

from pipeline.settings import SettingsError, load_settings


def test_names_derive_from_the_user_id():
    s = load_settings(pipeline_user_id="0a1b2c3d4e5f")
    assert s.topics == ["0a1b2c3d4e5f.pin", "0a1b2c3d4e5f.geo", "0a1b2c3d4e5f.user"]
    assert s.streams == ["streaming-0a1b2c3d4e5f-pin", "streaming-0a1b2c3d4e5f-geo", "streaming-0a1b2c3d4e5f-user"]
    assert s.bucket == "user-0a1b2c3d4e5f-bucket"
    assert s.delta_table("geo") == "0a1b2c3d4e5f_geo_table"
    assert s.dag_id == "0a1b2c3d4e5f_dag"
    assert s.delta_tables == ["0a1b2c3d4e5f_pin_table", "0a1b2c3d4e5f_geo_table", "0a1b2c3d4e5f_user_table"]
    assert s.stream_quarantine_table == "0a1b2c3d4e5f_stream_quarantine_table"
    assert s.api_name == "0a1b2c3d4e5f-pinterest-api"
    assert s.role_name == "0a1b2c3d4e5f-kinesis-access-role"
    assert s.usage_plan_name == "0a1b2c3d4e5f-pinterest-usage-plan"
    assert s.api_key_name == "0a1b2c3d4e5f-pinterest-api-key"
    assert s.streams_arn("aws", "123456789012") == (
        "arn:aws:kinesis:us-east-1:123456789012:stream/streaming-0a1b2c3d4e5f-*"
    )


URL_FIELDS = ("rest_proxy_url", "connect_url", "aws_endpoint_url", "aws_endpoint_url_kinesis", "aws_endpoint_url_s3")


def _ports(s) -> tuple[int, ...]:
    return s.rest_proxy_port, s.connect_address[1], s.localstack_port, s.kinesis_port, s.s3_store_port


def test_ports_come_from_the_urls():
    ports = (18082, 18083, 14566, 14567, 19000)
    assert (
        _ports(load_settings(**{f: f"http://127.0.0.1:{p}" for f, p in zip(URL_FIELDS, ports, strict=True)})) == ports
    )


def test_a_url_without_a_port_gets_the_service_s_default():
    assert _ports(load_settings(**dict.fromkeys(URL_FIELDS, "http://h"))) == (8082, 8083, 4566, 4567, 9000)


def test_local_service_urls_on_the_aws_target_use_the_default_ports():
    s = load_settings(pipeline_target="aws", bind_host="127.0.0.2", connect_url="http://c.example")
    assert s.connect_address == ("c.example", 8083)
    assert (s.localstack_url, s.kinesis_url, s.s3_store_url) == (
        "http://127.0.0.2:4566",
        "http://127.0.0.2:4567",
        "http://127.0.0.2:9000",
    )


@pytest.mark.parametrize("bad", ["XYZ", "0A1B2C3D4E5F", "0a1b2c3d4e5", "0a1b2c3d4e5f0", "0a1b2c3d4e5g"])
def test_malformed_user_id_names_the_variable(bad):
    with pytest.raises(SettingsError) as error:
        load_settings(pipeline_user_id=bad)
    assert "PIPELINE_USER_ID" in str(error.value)


def test_unknown_target_names_the_variable(monkeypatch):
    monkeypatch.setenv("PIPELINE_TARGET", "azure")
    with pytest.raises(SettingsError) as error:
        load_settings()
    assert "PIPELINE_TARGET" in str(error.value)


def test_invalid_port_names_the_variable(monkeypatch):
    monkeypatch.setenv("MYSQL_PORT", "99999")
    with pytest.raises(SettingsError) as error:
        load_settings()
    assert "MYSQL_PORT" in str(error.value)


def test_aws_target_drops_local_endpoints():
    s = load_settings(pipeline_target="aws")
    assert s.aws_endpoint_url is None
    assert s.s3_endpoint_url is None
    assert s.kinesis_endpoint_url is None
    assert "endpoint_url" not in s.boto3_client_kwargs("kinesis")
    assert "endpoint_url" not in s.boto3_client_kwargs("s3")


def test_aws_target_rejects_an_explicit_local_endpoint():
    with pytest.raises(SettingsError) as error:
        load_settings(pipeline_target="aws", aws_endpoint_url="http://localhost:4566")
    assert "AWS_ENDPOINT_URL" in str(error.value)


def test_aws_target_rejects_a_local_kinesis_endpoint():
    with pytest.raises(SettingsError) as error:
        load_settings(pipeline_target="aws", aws_endpoint_url_kinesis="http://127.0.0.1:4567")
    assert "AWS_ENDPOINT_URL_KINESIS" in str(error.value)


def test_kinesis_clients_call_the_kinesis_store_directly_and_fall_back_to_the_aws_endpoint():
    s = load_settings(_env_file=None)
    assert s.boto3_client_kwargs("kinesis")["endpoint_url"] == "http://127.0.0.1:4567"
    assert s.boto3_client_kwargs("apigateway")["endpoint_url"] == "http://127.0.0.1:4566"
    unset = load_settings(_env_file=None, aws_endpoint_url_kinesis="")
    assert unset.boto3_client_kwargs("kinesis")["endpoint_url"] == "http://127.0.0.1:4566"


def test_local_target_uses_local_endpoints():
    s = load_settings(pipeline_target="local")
    assert s.boto3_client_kwargs("kinesis")["endpoint_url"].startswith("http://127.0.0.1:")
    assert s.boto3_client_kwargs("s3")["endpoint_url"] == s.aws_endpoint_url_s3


def test_unknown_table_is_rejected():
    with pytest.raises(ValueError, match="unknown table"):
        load_settings().topic("pins")


def test_invoke_url_falls_back_to_the_provisioned_file(tmp_path):
    s = load_settings(state_dir=tmp_path, api_invoke_url="")
    assert s.resolved_invoke_url() is None
    s.invoke_url_file.write_text("http://127.0.0.1:4566/restapis/abc/prod/_user_request_/\n")
    assert s.resolved_invoke_url() == "http://127.0.0.1:4566/restapis/abc/prod/_user_request_"
    assert load_settings(state_dir=tmp_path, api_invoke_url="https://x/prod").resolved_invoke_url() == "https://x/prod"


def test_env_example_documents_every_setting():
    from pathlib import Path

    from pipeline.settings import REPO_ROOT, Settings

    documented = {
        line.split("=", 1)[0].lstrip("# ").strip()
        for line in Path(REPO_ROOT / ".env.example").read_text().splitlines()
        if "=" in line
    }
    missing = {name.upper() for name in Settings.model_fields} - documented
    assert not missing, f".env.example lacks {sorted(missing)}"


def test_env_example_copied_to_env_gives_the_defaults():
    from pipeline.settings import REPO_ROOT, Settings

    from_example = Settings(_env_file=REPO_ROOT / ".env.example")
    assert from_example.state_dir == Settings().state_dir
    assert from_example.aws_endpoint_url_s3 == "http://127.0.0.1:9000"
    assert from_example.api_key is None and from_example.kafka_auth == "plaintext"


def test_mysql_credentials_with_url_characters_survive_the_url():
    from sqlalchemy.engine import make_url

    s = load_settings(_env_file=None, mysql_user="me@home", mysql_password="p@ss:/#?%")
    url = make_url(s.mysql_url)
    assert (url.username, url.password, url.host, url.database) == (
        "me@home",
        "p@ss:/#?%",
        "127.0.0.1",
        "pinterest_data",
    )


@pytest.mark.parametrize("name", ["pinterest`; DROP DATABASE x; --", "", "a b", "x" * 65, "db-name"])
def test_a_database_name_that_is_not_a_plain_identifier_is_refused(name):
    with pytest.raises(SettingsError, match=r"MYSQL_DATABASE: .*MySQL database name"):
        load_settings(_env_file=None, mysql_database=name)
