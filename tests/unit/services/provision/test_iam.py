"""The pipeline's IAM roles (services/provision/iam.py): least privilege checked statement by statement, created and
re-created idempotently in moto's IAM, deleted by teardown, or written as JSON when the caller may not write IAM."""

from __future__ import annotations

import json
import re

import boto3
import pytest
from moto import mock_aws

from pipeline.settings import Settings, load_settings
from services.provision import iam as iam_roles
from tests.support.aws import fake_account
from tests.support.iam import deny_iam_calls

USER_ID = "7e57c0de0042"
REGION = "eu-west-1"
ACCOUNT = "123456789012"  # moto's account
CLUSTER = f"arn:aws:kafka:{REGION}:{ACCOUNT}:cluster/pipeline/3f1c2a9e-aaaa-bbbb-cccc-0123456789ab-2"

# The wildcard resources AWS requires, each matching one entry of iam.REQUIRED_WILDCARDS (the test below checks both
# directions: no other wildcard, and each exception used).
ALLOWED_WILDCARDS = {
    "kinesis:ListStreams on *": re.compile(r"^\*$"),
    "streaming-<id>-*": re.compile(rf"^arn:aws:kinesis:{REGION}:{ACCOUNT}:stream/streaming-{USER_ID}-\*$"),
    "__amazon_msk_connect_*": re.compile(r"^arn:aws:kafka:.*:(topic|group)/pipeline/[^/]+/__amazon_msk_connect_\*$"),
    "logs:DescribeLogGroups on *": re.compile(r"^\*$"),
    "log-group:airflow-<env>-*": re.compile(
        rf"^arn:aws:logs:{REGION}:{ACCOUNT}:log-group:airflow-pipeline-{USER_ID}-\*$"
    ),
    "cloudwatch:PutMetricData on *": re.compile(r"^\*$"),
    "s3:GetAccountPublicAccessBlock on *": re.compile(r"^\*$"),
    "sqs airflow-celery-*": re.compile(rf"^arn:aws:sqs:{REGION}:\*:airflow-celery-\*$"),
    "emr-serverless /applications/*": re.compile(
        rf"^arn:aws:emr-serverless:{REGION}:{ACCOUNT}:/applications/\*(/jobruns/\*)?$"
    ),
    "kms via sqs": re.compile(rf"^arn:aws:kms:\*:{ACCOUNT}:key/\*$"),
    # Object prefixes of this user's buckets: `<bucket>/<prefix>*`.
    "<bucket>/<prefix>*": re.compile(rf"^arn:aws:s3:::(user|airflow)-{USER_ID}-bucket/[^*]*\*$"),
}
# "*" is required only with these actions (no resource-level permission).
STAR_ACTIONS = {
    "kinesis:ListStreams",
    "logs:DescribeLogGroups",
    "cloudwatch:PutMetricData",
    "s3:GetAccountPublicAccessBlock",
}


def settings_for(tmp_path, **overrides) -> Settings:
    values = {
        "pipeline_target": "aws",
        "pipeline_user_id": USER_ID,
        "aws_region": REGION,
        "msk_cluster_arn": CLUSTER,
        "kafka_bootstrap_servers": "b-1.pipeline.abc.c2.kafka.eu-west-1.amazonaws.com:9098",
        "state_dir": tmp_path,
        "mwaa_environment_name": f"pipeline-{USER_ID}",
        "mwaa_bucket": f"airflow-{USER_ID}-bucket",
        **overrides,
    }
    return load_settings(**values)


@pytest.fixture
def aws(monkeypatch, tmp_path):
    fake_account(monkeypatch, tmp_path, ("AWS_", "PIPELINE_", "MSK_", "KAFKA_"))
    with mock_aws():
        yield settings_for(tmp_path)


def all_documents(settings: Settings) -> dict[str, dict]:
    return iam_roles.documents(settings, iam_roles.Scope(settings, "aws", ACCOUNT))


def as_list(value) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def violations(document: dict) -> list[str]:
    """Each wildcard action, and each wildcard resource that is not one AWS requires, in a permission document."""
    found = []
    for statement in document["Statement"]:
        actions = as_list(statement["Action"])
        found += [f"wildcard action {a}" for a in actions if "*" in a]
        if "NotResource" in statement:  # only MWAA's KMS statement, bound to SQS by kms:ViaService
            via = statement.get("Condition", {}).get("StringLike", {}).get("kms:ViaService")
            if via != [f"sqs.{REGION}.amazonaws.com"] or not ALLOWED_WILDCARDS["kms via sqs"].match(
                statement["NotResource"]
            ):
                found.append(f"NotResource beyond MWAA's SQS key: {statement}")
            continue
        for resource in as_list(statement["Resource"]):
            if "*" not in resource:
                continue
            if resource == "*" and not set(actions) <= STAR_ACTIONS:
                found.append(f"* for {actions}")
            elif not any(pattern.match(resource) for pattern in ALLOWED_WILDCARDS.values()):
                found.append(f"wildcard resource {resource} for {actions}")
    return found


def test_every_policy_is_least_privilege_with_only_the_wildcards_aws_requires(tmp_path):
    documents = all_documents(settings_for(tmp_path))
    policies = {name: doc for name, doc in documents.items() if name.endswith(".policy.json")}
    assert len(policies) == 6
    for name, document in policies.items():
        assert violations(document) == [], name
    assert set(ALLOWED_WILDCARDS) == set(iam_roles.REQUIRED_WILDCARDS), "each exception documented in iam.py"


def test_the_check_catches_wildcards_aws_does_not_require():
    broad = {
        "Statement": [
            {"Effect": "Allow", "Action": ["s3:*"], "Resource": f"arn:aws:s3:::user-{USER_ID}-bucket/topics/*"},
            {"Effect": "Allow", "Action": ["kinesis:GetRecords"], "Resource": "*"},
            {
                "Effect": "Allow",
                "Action": ["kafka-cluster:ReadData"],
                "Resource": CLUSTER.replace("cluster/", "topic/") + "/*",
            },
        ]
    }
    assert len(violations(broad)) == 3


def test_every_resource_is_this_users_or_the_cluster(tmp_path):
    """A resource without a wildcard names this user's bucket, streams, topics, groups, roles or MWAA environment,
    or the cluster itself (Connect, DescribeCluster)."""
    for name, document in all_documents(settings_for(tmp_path)).items():
        if not name.endswith(".policy.json"):
            continue
        for statement in document["Statement"]:
            for resource in as_list(statement.get("Resource", [])):
                if "*" not in resource:
                    assert USER_ID in resource or resource == CLUSTER, (name, resource)


def test_roles_grant_what_each_part_calls(tmp_path):
    settings = settings_for(tmp_path)
    scope = iam_roles.Scope(settings, "aws", ACCOUNT)
    by_part = {role.part: role for role in iam_roles.roles(scope)}

    def actions_on(part: str, resource: str) -> set[str]:
        return {
            action
            for statement in by_part[part].statements
            if resource in as_list(statement.get("Resource", []))
            for action in as_list(statement["Action"])
        }

    pin = f"{CLUSTER.replace(':cluster/', ':topic/')}/{USER_ID}.pin"
    # docs/aws.md: the REST proxy's idempotent producer and provisioning's admin client.
    assert {"kafka-cluster:WriteData", "kafka-cluster:CreateTopic", "kafka-cluster:AlterTopic"} <= actions_on(
        "ec2-client", pin
    )
    assert "kafka-cluster:WriteDataIdempotently" in actions_on("ec2-client", CLUSTER)
    assert actions_on("msk-connect", pin) == {"kafka-cluster:ReadData", "kafka-cluster:DescribeTopic"}
    assert actions_on("msk-connect", f"arn:aws:s3:::user-{USER_ID}-bucket/topics/{USER_ID}.pin/*") == {
        "s3:GetObject",
        "s3:PutObject",
    }
    assert "s3:PutObject" in actions_on("emr-job", f"arn:aws:s3:::user-{USER_ID}-bucket/delta/*")
    assert "s3:PutObject" not in actions_on("emr-job", f"arn:aws:s3:::user-{USER_ID}-bucket/topics/*")
    stream = f"arn:aws:kinesis:{REGION}:{ACCOUNT}:stream/streaming-{USER_ID}-geo"
    assert "kinesis:GetRecords" in actions_on("databricks", stream)
    assert actions_on("mwaa", f"arn:aws:iam::{ACCOUNT}:role/{USER_ID}-emr-job") == {"iam:PassRole"}
    assert by_part["msk-connect"].trusted == ("kafkaconnect.amazonaws.com",)


def test_provisioning_creates_every_role_and_a_rerun_converges(aws):
    first = iam_roles.provision_iam(aws, dry_run=False)
    client = boto3.client("iam", region_name=REGION)
    names = [aws.role_name, *(aws.iam_name(part) for part in iam_roles.PARTS)]
    for name in names:
        role = client.get_role(RoleName=name)["Role"]
        assert {"Key": "pipeline-user-id", "Value": USER_ID} in client.list_role_tags(RoleName=name)["Tags"]
        assert client.list_role_policies(RoleName=name)["PolicyNames"], name
        assert role["Arn"] == f"arn:aws:iam::{ACCOUNT}:role/{name}"
    for part in ("ec2-client", "databricks"):
        profile = client.get_instance_profile(InstanceProfileName=aws.iam_name(part))["InstanceProfile"]
        assert [r["RoleName"] for r in profile["Roles"]] == [aws.iam_name(part)]
    stored = client.get_role_policy(RoleName=aws.iam_name("mwaa"), PolicyName=aws.iam_name("mwaa"))["PolicyDocument"]
    stored = json.loads(stored) if isinstance(stored, str) else stored
    assert stored == all_documents(aws)[f"{aws.iam_name('mwaa')}.policy.json"]

    second = iam_roles.provision_iam(aws, dry_run=False)
    assert any(line.startswith("created role") for line in first)
    assert not any(line.startswith("created") for line in second)
    assert len(client.list_roles()["Roles"]) == len(names)
    assert len(client.list_instance_profiles()["InstanceProfiles"]) == 2


def test_teardown_deletes_only_this_users_roles(aws):
    iam_roles.provision_iam(aws, dry_run=False)
    client = boto3.client("iam", region_name=REGION)
    trust = json.dumps(iam_roles.trust_policy("ec2.amazonaws.com"))
    client.create_role(RoleName="someone-elses-role", AssumeRolePolicyDocument=trust)
    client.delete_role_policy(RoleName=aws.iam_name("mwaa"), PolicyName=aws.iam_name("mwaa"))
    client.delete_role(RoleName=aws.iam_name("mwaa"))
    client.create_role(RoleName=aws.iam_name("mwaa"), AssumeRolePolicyDocument=trust)  # same name, not ours
    planned = iam_roles.deprovision_iam(aws, dry_run=True)
    assert planned[:5] == [
        f"would delete IAM role {aws.role_name}",
        f"would delete IAM role {aws.iam_name('ec2-client')} and instance profile {aws.iam_name('ec2-client')}",
        f"would delete IAM role {aws.iam_name('msk-connect')}",
        f"would delete IAM role {aws.iam_name('emr-job')}",
        f"would delete IAM role {aws.iam_name('databricks')} and instance profile {aws.iam_name('databricks')}",
    ]
    assert planned[5].startswith(f"keep IAM role {aws.iam_name('mwaa')}: it lacks the tags")
    assert len(client.list_roles()["Roles"]) == 7

    iam_roles.deprovision_iam(aws, dry_run=False)
    assert sorted(role["RoleName"] for role in client.list_roles()["Roles"]) == sorted(
        ["someone-elses-role", aws.iam_name("mwaa")]
    )
    assert client.list_instance_profiles()["InstanceProfiles"] == []
    assert iam_roles.deprovision_iam(aws, dry_run=False) == planned[5:]


def test_without_iam_write_rights_the_documents_are_written_instead(aws, monkeypatch):
    deny_iam_calls(monkeypatch, iam_roles, "create_role")
    lines = iam_roles.provision_iam(aws, dry_run=False)
    assert lines[0].startswith("no IAM write permission (create_role")
    written = sorted(p.name for p in (aws.state_dir / "iam-policies").iterdir())
    assert written == sorted(all_documents(aws))
    trust = json.loads((aws.state_dir / "iam-policies" / f"{aws.iam_name('emr-job')}.trust.json").read_text())
    assert trust["Statement"][0]["Principal"] == {"Service": "emr-serverless.amazonaws.com"}


def test_emit_policies_writes_the_documents_and_creates_nothing(aws, tmp_path, monkeypatch):
    monkeypatch.setattr(iam_roles, "get_settings", lambda: aws)
    assert iam_roles.main(["--emit-policies", str(tmp_path / "out")]) == 0
    assert len(list((tmp_path / "out").glob("*.policy.json"))) == 6
    assert boto3.client("iam", region_name=REGION).list_roles()["Roles"] == []


def test_a_missing_cluster_arn_is_named(tmp_path):
    settings = settings_for(tmp_path, msk_cluster_arn=None)
    with pytest.raises(SystemExit, match="MSK_CLUSTER_ARN"):
        iam_roles.documents(settings, iam_roles.Scope(settings, "aws", ACCOUNT))


def test_dry_run_lists_every_role_without_calling_aws(tmp_path):
    lines = iam_roles.provision_iam(settings_for(tmp_path), dry_run=True)
    assert len(lines) == 6 and all(line.startswith("would ensure role") for line in lines)


def test_the_local_target_needs_no_roles_and_the_aws_target_needs_the_cluster(tmp_path):
    local = iam_roles.provision_iam(load_settings(state_dir=tmp_path), dry_run=False)
    assert local == ["skipped: PIPELINE_TARGET=local (LocalStack checks no permissions; the api step makes its role)"]
    assert iam_roles.requires(settings_for(tmp_path)) == []
    assert iam_roles.requires(settings_for(tmp_path, msk_cluster_arn=None))[0].startswith("MSK_CLUSTER_ARN is not set")


def test_the_mwaa_role_is_made_only_for_a_named_environment(tmp_path):
    settings = settings_for(tmp_path, mwaa_bucket=None)
    assert [role.part for role in iam_roles.roles(iam_roles.Scope(settings, "aws", ACCOUNT))] == [
        "ec2-client",
        "msk-connect",
        "emr-job",
        "databricks",
    ]
    assert iam_roles.provision_iam(settings, dry_run=True)[-1].startswith("no MWAA role: set MWAA_ENVIRONMENT_NAME")
