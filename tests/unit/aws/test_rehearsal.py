"""A rehearsal of the aws target in moto's in-process AWS: `make provision` from an aws `.env` creates the bucket,
the Kinesis streams, the REST API (with its usage plan and key) and the execution role, all tagged; the sink's
uploads land in the bucket; `make deprovision --yes` then leaves nothing behind, checked by listing every service,
and keeps what provisioning did not make.

The Kafka steps (topics on MSK, the connector) talk to a broker and Kafka Connect, which moto does not have: the
rehearsal selects the other steps with `--only`, as a user without a cluster yet would.

The whole flow (`test_the_whole_aws_target_from_env_to_nothing`) adds an MSK cluster and the steps `iam` and `job`:
the `.env` names a cluster created in moto's `kafka` service; provisioning makes the bucket, every IAM role (with
instance profiles), the streams, the API and the job package plus the EMR Serverless application; the StartJobRun
request of the DAG's `run_batch_job` task (built by `orchestration.runners`, as the DAG does) is accepted by moto's
EMR Serverless and names objects that were uploaded; teardown leaves nothing behind. Left out of it, and why:
- `topics` and `connector` need a Kafka broker and a Connect worker's REST API; `msk-connect` needs MSK Connect,
  which moto lacks (its requests are validated with botocore's Stubber in test_msk_connect.py). The dry run
  (`test_the_dry_run_of_every_step_calls_nothing`) covers all of them: their dry runs make no call.
- moto 5.2 (a) gives a cluster the ARN `cluster/<uuid>` where AWS gives `cluster/<name>/<uuid>` (the form settings
  accept and the IAM policies derive topic ARNs from), so the `.env` holds the AWS form of moto's cluster; (b) has
  no `get_bootstrap_brokers`, so KAFKA_BOOTSTRAP_SERVERS is MSK's documented IAM-listener shape; (c) accepts only
  `emr-X.Y.0` release labels, so EMR_SERVERLESS_RELEASE is `emr-7.12.0` (the default `emr-spark-8.0.0` is checked
  by the dry run in test_jobs.py).
- The dependency archive is built for real by uv, with one package (pydantic-settings) instead of all four, as
  test_jobs.py does, to stay small and quick.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import boto3
import jinja2
import pytest
from moto import mock_aws

from orchestration import runners
from pipeline import layout
from pipeline.settings import REPO_ROOT, Settings, load_settings
from services.provision import jobs, teardown
from services.provision.__main__ import main as provision
from services.provision.__main__ import step_names
from tests.support.aws import fake_account
from tests.unit.services.provision.test_jobs import MOTO_RELEASE, SMALL_DEPS

USER_ID = "7e57c0de0001"
REGION = "eu-west-1"
AWS_STEPS = ["bucket", "streams", "api"]
# Environment variables that would override the `.env` of a test.
SETTING_PREFIXES = ("AWS_", "PIPELINE_", "REST_PROXY", "API_", "KINESIS_", "KAFKA_", "CONNECT_", "MSK_", "EMR_")
SETTING_PREFIXES += ("BATCH_", "DATABRICKS_", "MWAA_", "STATE_DIR", "INSTALL_DIR")
# What a user's `.env` for the account says (docs/aws.md §1), minus what only the Kafka steps read.
AWS_ENV = {
    "PIPELINE_TARGET": "aws",
    "PIPELINE_USER_ID": USER_ID,
    "AWS_REGION": REGION,
    "REST_PROXY_URL": "http://ec2-203-0-113-10.eu-west-1.compute.amazonaws.com:8082",
    "KINESIS_SHARDS": "1",
}


@pytest.fixture
def mocked(monkeypatch: pytest.MonkeyPatch, tmp_path) -> Path:
    """Fake credentials, no user config or settings from the environment, moto in place of the account."""
    fake_account(monkeypatch, tmp_path, SETTING_PREFIXES)
    with mock_aws():
        yield tmp_path


def write_env(folder: Path, values: dict[str, object]) -> Path:
    """The user's `.env` in `folder` (state kept in `folder/state`)."""
    env_file = folder / ".env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in {**values, "STATE_DIR": folder / "state"}.items()))
    return env_file


@pytest.fixture
def account(mocked: Path) -> Settings:
    """An aws `.env` file for the steps that need no Kafka cluster."""
    return load_settings(_env_file=write_env(mocked, AWS_ENV))


def client(service: str):
    return boto3.client(service, region_name=REGION)


def inventory() -> dict[str, list[str]]:
    """Every resource of the kinds provisioning creates, in the whole (mocked) account."""
    apigw = client("apigateway")
    found = {
        "buckets": [b["Name"] for b in client("s3").list_buckets()["Buckets"]],
        "streams": client("kinesis").list_streams()["StreamNames"],
        "apis": [a["name"] for a in apigw.get_rest_apis()["items"]],
        "usage plans": [p["name"] for p in apigw.get_usage_plans()["items"]],
        "api keys": [k["name"] for k in apigw.get_api_keys()["items"]],
        "roles": [r["RoleName"] for r in client("iam").list_roles()["Roles"]],
    }
    return {kind: sorted(names) for kind, names in found.items()}


def test_provision_then_deprovision_leaves_nothing_behind(account: Settings, capsys):
    settings = account
    assert settings.pipeline_target == "aws" and settings.s3_endpoint_url is None
    assert provision(["--only", *AWS_STEPS], settings=settings) == 0

    created = inventory()
    assert created == {
        "buckets": [settings.bucket],
        "streams": sorted(settings.streams),
        "apis": [settings.api_name],
        "usage plans": [settings.usage_plan_name],  # API_KEY_REQUIRED defaults to true on aws
        "api keys": [settings.api_key_name],
        "roles": [settings.role_name],
    }
    tags = settings.resource_tags
    s3 = client("s3")
    assert {t["Key"]: t["Value"] for t in s3.get_bucket_tagging(Bucket=settings.bucket)["TagSet"]} == tags
    for stream in settings.streams:
        listed = client("kinesis").list_tags_for_stream(StreamName=stream)["Tags"]
        assert {t["Key"]: t["Value"] for t in listed} == tags
    assert {t["Key"]: t["Value"] for t in client("iam").list_role_tags(RoleName=settings.role_name)["Tags"]} == tags
    assert client("apigateway").get_rest_apis()["items"][0]["tags"] == tags
    assert settings.resolved_invoke_url().startswith("https://")

    # The sink's uploads (a versioned bucket keeps old versions: teardown deletes those too).
    s3.put_bucket_versioning(Bucket=settings.bucket, VersioningConfiguration={"Status": "Enabled"})
    key = layout.object_key(settings.topic("pin"), 0, 0)
    for body in (b'{"ind": 1}\n', b'{"ind": 1}\n{"ind": 2}\n'):
        s3.put_object(Bucket=settings.bucket, Key=key, Body=body)
    capsys.readouterr()

    assert teardown.main(["--yes", "--only", *AWS_STEPS], settings=settings) == 0
    out = capsys.readouterr().out
    assert f"would delete S3 bucket {settings.bucket} and the 2 object version(s) in it" in out
    assert f"deleted IAM role {settings.role_name}" in out
    assert inventory() == {kind: [] for kind in created}
    assert not settings.invoke_url_file.exists() and not settings.api_key_file.exists()

    assert teardown.main(["--yes", "--only", *AWS_STEPS], settings=settings) == 0
    assert "nothing to delete" in capsys.readouterr().out


def test_deprovision_keeps_what_provisioning_did_not_make(account: Settings, capsys):
    """Same names but no project tags (made by hand, or another tool), and other names: all kept."""
    settings = account
    iam = client("iam")
    trust = {"Version": "2012-10-17", "Statement": []}
    iam.create_role(RoleName=settings.role_name, AssumeRolePolicyDocument=json.dumps(trust))
    client("kinesis").create_stream(StreamName=settings.stream("pin"), ShardCount=1)
    client("s3").create_bucket(Bucket="someone-elses-bucket", CreateBucketConfiguration={"LocationConstraint": REGION})
    before = inventory()

    assert teardown.main(["--yes", "--only", *AWS_STEPS], settings=settings) == 0
    out = capsys.readouterr().out
    assert f"keep IAM role {settings.role_name}: it lacks the tags" in out
    assert f"keep Kinesis stream {settings.stream('pin')} (1 open shard(s), provisioned): it lacks the tags" in out
    assert "nothing to delete" in out
    assert inventory() == before


def test_deprovision_asks_first_and_a_no_deletes_nothing(account: Settings, capsys):
    settings = account
    provision(["--only", *AWS_STEPS], settings=settings)
    before = inventory()
    questions = []

    def say_no(question: str) -> str:
        questions.append(question)
        return "no"

    assert teardown.main(["--only", *AWS_STEPS], settings=settings, answer=say_no) == 1
    assert questions == ["delete all of the above? type yes: "]
    assert "nothing deleted" in capsys.readouterr().out
    assert inventory() == before

    assert teardown.main(["--only", *AWS_STEPS], settings=settings, answer=lambda _: "yes") == 0
    assert inventory() == {kind: [] for kind in before}


def test_the_dry_run_checks_plans_and_prices_without_creating_anything(account: Settings, capsys):
    settings = account
    assert provision(["--dry-run", "--only", *AWS_STEPS], settings=settings) == 0
    out = capsys.readouterr().out
    assert "what this costs on AWS" in out
    assert "[streams] Kinesis: 3 streams x 1 provisioned shard(s) = 3 shard(s): $0.0450/hour" in out
    assert "POST /topics/7e57c0de0001.pin -> http://ec2-203-0-113-10" in out
    assert inventory() == {kind: [] for kind in inventory()}


# --- the whole target: MSK cluster, IAM, the job package and its EMR Serverless run --------------------------------
# Every step moto serves, in provisioning order (topics, connector and msk-connect need a broker or MSK Connect).
MOTO_STEPS = ["bucket", "iam", "streams", "api", "job"]
CLUSTER_NAME = "pipeline-msk"
BOOTSTRAP = f"b-1.{CLUSTER_NAME}.abc123.c2.kafka.{REGION}.amazonaws.com:9098"


def aws_cluster_arn(moto_arn: str, name: str) -> str:
    """AWS's `cluster/<name>/<uuid>` form of moto's `cluster/<uuid>` ARN (see the module docstring)."""
    head, _, uuid = moto_arn.rpartition("/")
    return moto_arn if head.endswith(f"/{name}") else f"{head}/{name}/{uuid}"


@pytest.fixture
def cluster_env(mocked: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The `.env` of a user with an MSK cluster (created in moto), MSK Connect and EMR Serverless."""
    monkeypatch.setattr(runners, "JOB_PACKAGES", SMALL_DEPS)
    kafka = client("kafka")
    broker_nodes = {"InstanceType": "kafka.m5.large", "ClientSubnets": ["subnet-0a", "subnet-0b"]}
    arn = kafka.create_cluster_v2(
        ClusterName=CLUSTER_NAME,
        Provisioned={"BrokerNodeGroupInfo": broker_nodes, "KafkaVersion": "3.6.0", "NumberOfBrokerNodes": 2},
    )["ClusterArn"]
    return {
        **AWS_ENV,
        "KAFKA_BOOTSTRAP_SERVERS": BOOTSTRAP,
        "KAFKA_AUTH": "iam",
        "CONNECT_RUNNER": "msk-connect",
        "MSK_CLUSTER_ARN": aws_cluster_arn(arn, CLUSTER_NAME),
        "BATCH_RUNNER": "emr-serverless",
        "EMR_SERVERLESS_RELEASE": MOTO_RELEASE,
    }


def whole_inventory() -> dict[str, list[str]]:
    """`inventory()` plus what the iam and job steps create, account-wide."""
    iam, emr = client("iam"), client("emr-serverless")
    return {
        **inventory(),
        "instance profiles": sorted(p["InstanceProfileName"] for p in iam.list_instance_profiles()["InstanceProfiles"]),
        "IAM policies": sorted(p["PolicyName"] for p in iam.list_policies(Scope="Local")["Policies"]),
        "EMR Serverless applications": sorted(
            app["name"] for app in emr.list_applications()["applications"] if app["state"] != "TERMINATED"
        ),
    }


def printed_env_lines(out: str) -> dict[str, str]:
    """The `set NAME=VALUE in .env` lines provisioning prints, as the user copies them."""
    found = re.findall(r"set ([A-Z_]+)=(\S+) in \.env", out)
    return dict(found)


def dag_start_job_run(settings: Settings, ds: str) -> dict:
    """The start_job_run call EmrServerlessStartJobOperator makes from the DAG's arguments
    (`runners.emr_serverless_operator_kwargs`): its execute() sends applicationId, executionRoleArn, jobDriver,
    configurationOverrides, name and `**config`, with the templated fields rendered by Airflow's Jinja."""
    kwargs = runners.emr_serverless_operator_kwargs(settings)
    return {
        "applicationId": kwargs["application_id"],
        "executionRoleArn": kwargs["execution_role_arn"],
        "jobDriver": kwargs["job_driver"],
        "configurationOverrides": kwargs["configuration_overrides"],
        "name": jinja2.Template(kwargs["name"]).render(ds=ds),
        **kwargs["config"],
    }


def s3_object(uri: str) -> dict:
    bucket, _, key = uri.split("://", 1)[1].partition("/")
    return client("s3").head_object(Bucket=bucket, Key=key)


def test_the_whole_aws_target_from_env_to_nothing(cluster_env: dict[str, str], mocked: Path, capsys):
    env_file = write_env(mocked, cluster_env)
    settings = load_settings(_env_file=env_file)
    assert provision(["--only", *MOTO_STEPS], settings=settings) == 0
    out = capsys.readouterr().out

    # The user copies what provisioning printed into .env, as docs/aws.md says; the DAG reads the new settings.
    printed = printed_env_lines(out)
    assert set(printed) == {"EMR_SERVERLESS_APPLICATION_ID", "EMR_SERVERLESS_EXECUTION_ROLE_ARN"}, out
    settings = load_settings(_env_file=write_env(mocked, {**cluster_env, **printed}))

    iam_roles = [settings.iam_name(part) for part in ("ec2-client", "msk-connect", "emr-job", "databricks")]
    created = whole_inventory()
    assert created == {
        "buckets": [settings.bucket],
        "streams": sorted(settings.streams),
        "apis": [settings.api_name],
        "usage plans": [settings.usage_plan_name],
        "api keys": [settings.api_key_name],
        "roles": sorted([settings.role_name, *iam_roles]),
        "instance profiles": sorted(settings.iam_name(part) for part in ("ec2-client", "databricks")),
        "IAM policies": [],  # every policy is inline, deleted with its role
        "EMR Serverless applications": [settings.emr_serverless_application_name],
    }

    # Every resource carries the project's tags (teardown finds them by these).
    tags, iam, emr = settings.resource_tags, client("iam"), client("emr-serverless")
    for name in created["roles"]:
        assert {t["Key"]: t["Value"] for t in iam.list_role_tags(RoleName=name)["Tags"]} == tags, name
    for name in created["instance profiles"]:
        listed = iam.get_instance_profile(InstanceProfileName=name)["InstanceProfile"]["Tags"]
        assert {t["Key"]: t["Value"] for t in listed} == tags, name
    app_id = settings.emr_serverless_application_id
    assert emr.get_application(applicationId=app_id)["application"]["tags"] == tags
    assert {t["Key"]: t["Value"] for t in client("s3").get_bucket_tagging(Bucket=settings.bucket)["TagSet"]} == tags
    for stream in settings.streams:
        assert {t["Key"]: t["Value"] for t in client("kinesis").list_tags_for_stream(StreamName=stream)["Tags"]} == tags
    apigw = client("apigateway")
    for kind in ("get_rest_apis", "get_usage_plans", "get_api_keys"):
        (item,) = getattr(apigw, kind)()["items"]
        assert {k: v for k, v in item.get("tags", {}).items() if k in tags} == tags, kind
    # The policies name the cluster of the .env.
    (policy,) = iam.list_role_policies(RoleName=settings.iam_name("msk-connect"))["PolicyNames"]
    document = json.dumps(iam.get_role_policy(RoleName=settings.iam_name("msk-connect"), PolicyName=policy))
    assert settings.msk_cluster_arn.replace(":cluster/", ":topic/") in document

    # The uploads: the entry file is the project's, the package's objects carry their sha256.
    job_keys = {item["Key"] for item in client("s3").list_objects_v2(Bucket=settings.bucket)["Contents"]}
    assert job_keys == {layout.job_key(name) for name in (runners.ENTRY_FILE, runners.CODE_ZIP, runners.DEPS_ARCHIVE)}
    entry = client("s3").get_object(Bucket=settings.bucket, Key=layout.job_key(runners.ENTRY_FILE))["Body"].read()
    assert entry == (REPO_ROOT / "spark_jobs" / "cluster_entry.py").read_bytes()

    # The DAG's run_batch_job task: its request, sent to EMR Serverless, accepted and stored as sent.
    request = dag_start_job_run(settings, "2026-12-02")
    assert request["applicationId"] == app_id
    assert request["executionRoleArn"] == iam.get_role(RoleName=settings.iam_name("emr-job"))["Role"]["Arn"]
    run_id = emr.start_job_run(**request)["jobRunId"]
    run = emr.get_job_run(applicationId=app_id, jobRunId=run_id)["jobRun"]
    assert run["name"] == f"{settings.dag_id}-batch-2026-12-02"
    submit = run["jobDriver"]["sparkSubmit"]
    assert submit == request["jobDriver"]["sparkSubmit"]
    arguments = submit["entryPointArguments"]
    code = arguments[arguments.index("--code") + 1]
    archives = re.search(r"--conf spark\.archives=(\S+)#", submit["sparkSubmitParameters"]).group(1)
    for uri in (submit["entryPoint"], code.replace("s3a://", "s3://", 1), archives):
        assert s3_object(uri)["Metadata"][jobs.SHA_METADATA], uri  # uploaded by provisioning, really there
    assert arguments[arguments.index("batch") + 1 :] == layout.batch_job_arguments(settings.bucket_uri)

    # Teardown: everything provisioning made goes, the user's cluster stays.
    assert teardown.main(["--yes", "--only", *MOTO_STEPS], settings=settings) == 0
    out = capsys.readouterr().out
    assert f"deleted EMR Serverless application {settings.emr_serverless_application_name}" in out
    assert whole_inventory() == {kind: [] for kind in created}
    assert [c["ClusterName"] for c in client("kafka").list_clusters_v2()["ClusterInfoList"]] == [CLUSTER_NAME]
    assert teardown.main(["--yes", "--only", *MOTO_STEPS], settings=settings) == 0
    assert "nothing to delete" in capsys.readouterr().out


def test_the_dry_run_of_every_step_calls_nothing(
    cluster_env: dict[str, str], mocked: Path, capsys, monkeypatch: pytest.MonkeyPatch
):
    """Every step, Kafka's and MSK Connect's included: settings checked, the plan and its prices printed, and not one
    AWS request sent (counted on boto3's default session, which every provisioning client comes from)."""
    settings = load_settings(_env_file=write_env(mocked, cluster_env))
    # The msk-connect dry run hashes the plugin folder `make setup` fills; a small one stands in for the jars here.
    plugin = settings.tools_dir / "jars" / "connect-plugins" / "s3-sink"
    plugin.mkdir(parents=True)
    (plugin / "s3-sink-0.1.0.jar").write_bytes(b"sink classes")
    before = whole_inventory()
    sent: list[str] = []
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", boto3.Session())
    boto3.DEFAULT_SESSION.events.register("before-send", lambda request, **_: sent.append(request.url))
    client("sts").get_caller_identity()  # the counter counts
    assert len(sent) == 1
    sent.clear()

    assert provision(["--dry-run", "--only", *step_names()], settings=settings) == 0
    out = capsys.readouterr().out
    assert sent == []
    for step in step_names():
        assert f"  [{step}] done in" in out, step
    assert "would ensure topic 7e57c0de0001.pin with" in out
    assert "skipped: CONNECT_RUNNER=msk-connect" in out
    assert f"IAM auth to {settings.msk_cluster_arn}" in out
    assert f"would ensure role {settings.iam_name('emr-job')}" in out
    assert f"would create EMR Serverless application {settings.emr_serverless_application_name}" in out
    costs = out.split("what this costs on AWS", 1)[1]
    for step in ("streams", "topics", "msk-connect", "job"):
        assert f"[{step}]" in costs, step
    assert whole_inventory() == before
