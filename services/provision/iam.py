"""Provisioning step `iam`: the role and inline policy of every part of the pipeline on a real AWS account.

Each role is `<id>-<part>` with one inline policy of the same name, trusted by the one service that uses it, tagged
`project=pinterest-pipeline`, `pipeline-user-id=<id>` (teardown finds them by name and tag). Policies are least
privilege: explicit actions, and resources that are this user's bucket prefixes, streams, MSK topics and groups
(`MSK_CLUSTER_ARN`). Where AWS allows no narrower resource, the exception is listed in `REQUIRED_WILDCARDS` with the
reason; tests/unit/services/provision/test_iam.py fails on any other wildcard.

| part | trusted by | what it may do |
|---|---|---|
| `kinesis-access-role` (`settings.role_name`) | API Gateway | the Kinesis calls of the gateway's routes on `streaming-<id>-*` |
| `ec2-client` (+ instance profile) | EC2 | the REST proxy's and provisioning's MSK calls; the self-managed Connect worker (internal topics, group, S3) |
| `msk-connect` | MSK Connect | read the three topics, its own group and internal topics; put/get/list the sink's `topics/` |
| `emr-job` | EMR Serverless | the batch and streaming jobs: read `topics/` and the job code, write results and Delta tables, read the streams |
| `databricks` (+ instance profile) | EC2 (Databricks' clusters) | the same as `emr-job` |
| `mwaa` (with MWAA_ENVIRONMENT_NAME, MWAA_BUCKET) | MWAA | its bucket, logs, metrics and queue; start and watch runs on this user's EMR Serverless application; pass `emr-job` only |

When the caller may not write IAM (`AccessDenied` on a create), or with `--emit-policies DIR`
(`python -m services.provision.iam --emit-policies DIR`), the trust and permission documents are written as JSON
files instead, for an administrator to create.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
from botocore.exceptions import ClientError

from pipeline import layout
from pipeline.settings import Settings, get_settings

VERSION = "2012-10-17"
DENIED = ("AccessDenied", "AccessDeniedException", "UnauthorizedOperation")
API_POLICY_NAME = "kinesis-front-door"
# The roles of `roles()`, by the suffix of their names `<id>-<part>` (API Gateway's is `settings.role_name`).
PARTS = ("ec2-client", "msk-connect", "emr-job", "databricks", "mwaa")
# Where the runners' code and logs live in the bucket: services/provision/jobs.py uploads the job package under
# `jobs/` and the EMR Serverless runs log to `jobs/logs/` (orchestration/runners.py).
JOB_CODE_DIR = "jobs"
JOB_LOGS_DIR = "jobs/logs"

# Every wildcard a policy here may hold, with why AWS needs it (resource, or action with its reason).
REQUIRED_WILDCARDS: dict[str, str] = {
    "kinesis:ListStreams on *": "ListStreams has no resource-level permission (the gateway's GET /streams)",
    "streaming-<id>-*": "the gateway's routes take the stream name from the path; the prefix is this user's",
    "__amazon_msk_connect_*": "MSK Connect's internal topics and groups: names chosen by the service (AWS docs)",
    "logs:DescribeLogGroups on *": "no resource-level permission (MWAA checks its log groups)",
    "log-group:airflow-<env>-*": "MWAA creates one log group per component (DAGProcessing, Scheduler, Task, ...)",
    "cloudwatch:PutMetricData on *": "no resource-level permission (MWAA's metrics)",
    "s3:GetAccountPublicAccessBlock on *": "an account-level read, no resource-level permission (MWAA)",
    "sqs airflow-celery-*": "MWAA's Celery queue lives in an AWS-owned account under a name MWAA chooses",
    "kms via sqs": "MWAA's queue is encrypted with an AWS-owned key; allowed only through SQS (kms:ViaService)",
    "emr-serverless /applications/*": "the application's id is made at creation; scoped by its pipeline-user-id tag",
    "<bucket>/<prefix>*": "the objects under one prefix of this user's bucket (S3 names a folder's objects no other way)",
}


@dataclass(frozen=True)
class Role:
    part: str
    description: str
    trusted: tuple[str, ...]
    statements: list[dict[str, Any]]
    instance_profile: bool = False
    extra_trust: dict[str, Any] = field(default_factory=dict)


class Scope:
    """ARNs of this user's resources in one account (partition, account id, region)."""

    def __init__(self, settings: Settings, partition: str, account: str):
        self.settings, self.partition, self.account, self.region = settings, partition, account, settings.aws_region

    def arn(self, service: str, resource: str, region: bool = True, account: bool = True) -> str:
        where = f"{self.region if region else ''}:{self.account if account else ''}"
        return f"arn:{self.partition}:{service}:{where}:{resource}"

    # --- S3 ---
    def bucket(self, name: str | None = None) -> str:
        return f"arn:{self.partition}:s3:::{name or self.settings.bucket}"

    def objects(self, *prefixes: str, bucket: str | None = None) -> list[str]:
        return [f"{self.bucket(bucket)}/{prefix}*" for prefix in prefixes]

    # --- Kinesis ---
    def streams(self) -> list[str]:
        return [self.arn("kinesis", f"stream/{name}") for name in self.settings.streams]

    def role(self, part: str) -> str:
        return self.arn("iam", f"role/{self.settings.iam_name(part)}", region=False)

    # --- MSK (https://docs.aws.amazon.com/msk/latest/developerguide/kafka-actions.html, resources) ---
    def cluster(self) -> str:
        if not self.settings.msk_cluster_arn:
            raise SystemExit(
                "MSK_CLUSTER_ARN is not set: the IAM policies of the EC2 client and MSK Connect name the cluster's "
                "topics and groups. Set it to the cluster's ARN (MSK console, or `aws kafka list-clusters-v2`)."
            )
        return self.settings.msk_cluster_arn

    def topics(self, *names: str) -> list[str]:
        return [self.cluster().replace(":cluster/", ":topic/") + f"/{name}" for name in names]

    def groups(self, *names: str) -> list[str]:
        return [self.cluster().replace(":cluster/", ":group/") + f"/{name}" for name in names]


def policy(statements: list[dict[str, Any]]) -> dict[str, Any]:
    return {"Version": VERSION, "Statement": statements}


def allow(actions: list[str], resources: list[str] | str, **condition: Any) -> dict[str, Any]:
    statement: dict[str, Any] = {"Effect": "Allow", "Action": actions, "Resource": resources}
    if condition:
        statement["Condition"] = condition
    return statement


def trust_policy(*services: str, **condition: Any) -> dict[str, Any]:
    statement: dict[str, Any] = {
        "Effect": "Allow",
        "Principal": {"Service": services[0] if len(services) == 1 else list(services)},
        "Action": "sts:AssumeRole",
    }
    if condition:
        statement["Condition"] = condition
    return policy([statement])


def kinesis_policy(settings: Settings, role_arn: str, actions: list[str] | None = None) -> dict[str, Any]:
    """What the API may do in Kinesis: the actions its routes call (`aws.kinesis_actions`; default the emulator's
    PutRecord and PutRecords), on this user's `streaming-<id>-*` streams only; ListStreams, which has no stream,
    only when a route lists streams."""
    partition, account = role_arn.split(":")[1], role_arn.split(":")[4]
    streams = settings.streams_arn(partition, account)
    actions = sorted(actions or ["kinesis:PutRecord", "kinesis:PutRecords"])
    statements = [allow([a for a in actions if a != "kinesis:ListStreams"], streams)]
    if "kinesis:ListStreams" in actions:
        statements.insert(0, allow(["kinesis:ListStreams"], "*"))
    return policy(statements)


# --- the parts ---------------------------------------------------------------------------------------------------
def sink_s3(scope: Scope) -> list[dict[str, Any]]:
    """The S3 sink (S3ObjectStore.java): list a partition's keys, read the newest object, put new ones."""
    topics = [layout.topic_prefix(topic) for topic in scope.settings.topics]
    return [
        allow(["s3:ListBucket"], scope.bucket(), StringLike={"s3:prefix": [f"{prefix}*" for prefix in topics]}),
        allow(["s3:GetObject", "s3:PutObject"], scope.objects(*topics)),
    ]


def runner_access(scope: Scope) -> list[dict[str, Any]]:
    """The batch and streaming jobs on EMR Serverless or Databricks: read the sink's objects and the job code, write
    results and Delta tables (Spark's committers and Delta's log also delete), read the three Kinesis streams."""
    read = [layout.TOPICS_PREFIX, f"{JOB_CODE_DIR}/"]
    write = [f"{layout.RESULTS_DIR}/", f"{layout.DELTA_DIR}/", f"{JOB_LOGS_DIR}/"]  # jobs/logs/ is read above too
    return [
        allow(["s3:GetBucketLocation"], scope.bucket()),
        allow(["s3:ListBucket"], scope.bucket(), StringLike={"s3:prefix": [f"{p}*" for p in read + write]}),
        allow(["s3:GetObject"], scope.objects(*read)),
        allow(["s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload"], scope.objects(*write)),
        allow(
            [
                "kinesis:DescribeStream",
                "kinesis:DescribeStreamSummary",
                "kinesis:ListShards",
                "kinesis:GetShardIterator",
                "kinesis:GetRecords",
            ],
            scope.streams(),
        ),
    ]


def ec2_client_statements(scope: Scope) -> list[dict[str, Any]]:
    """The REST proxy (idempotent producer, consumers), provisioning's admin client, the audit, and the
    self-managed Connect worker, all with MSK IAM auth (docs/aws.md lists the actions)."""
    settings = scope.settings
    worker_topics = [settings.connect_storage_topic(kind) for kind in ("configs", "offsets", "status")]
    # The worker's group and its sink's consumer group (which the audit also reads); the project's other consumers
    # assign partitions without a group.
    groups = [settings.connect_worker_group, f"connect-{settings.connector_name}"]
    return [
        allow(
            ["kafka-cluster:Connect", "kafka-cluster:DescribeCluster", "kafka-cluster:WriteDataIdempotently"],
            scope.cluster(),
        ),
        allow(
            [
                "kafka-cluster:CreateTopic",
                "kafka-cluster:DescribeTopic",
                "kafka-cluster:AlterTopic",
                "kafka-cluster:DescribeTopicDynamicConfiguration",
                "kafka-cluster:WriteData",
                "kafka-cluster:ReadData",
            ],
            scope.topics(*settings.topics, *worker_topics),
        ),
        allow(["kafka-cluster:DescribeGroup", "kafka-cluster:AlterGroup"], scope.groups(*groups)),
        *sink_s3(scope),
    ]


def msk_connect_statements(scope: Scope) -> list[dict[str, Any]]:
    """MSK Connect's service execution role for an IAM-auth cluster (AWS docs: "Understand service execution role")."""
    settings = scope.settings
    internal = "__amazon_msk_connect_*"
    return [
        allow(["kafka-cluster:Connect", "kafka-cluster:DescribeCluster"], scope.cluster()),
        allow(["kafka-cluster:ReadData", "kafka-cluster:DescribeTopic"], scope.topics(*settings.topics)),
        allow(
            [
                "kafka-cluster:CreateTopic",
                "kafka-cluster:WriteData",
                "kafka-cluster:ReadData",
                "kafka-cluster:DescribeTopic",
            ],
            scope.topics(internal),
        ),
        allow(
            ["kafka-cluster:AlterGroup", "kafka-cluster:DescribeGroup"],
            scope.groups(internal, f"connect-{settings.connector_name}"),
        ),
        *sink_s3(scope),
    ]


def mwaa_statements(scope: Scope) -> list[dict[str, Any]]:
    """MWAA's execution role (AWS docs: "Amazon MWAA execution role"), plus running the batch job on this user's
    EMR Serverless application as the `emr-job` role and nothing else."""
    settings = scope.settings
    environment = settings.mwaa_environment_name
    tagged = {"StringEquals": {"aws:ResourceTag/pipeline-user-id": settings.pipeline_user_id}}
    applications = scope.arn("emr-serverless", "/applications/*")
    return [
        allow(["airflow:PublishMetrics"], scope.arn("airflow", f"environment/{environment}")),
        allow(
            ["s3:GetBucketLocation", "s3:GetBucketVersioning", "s3:GetBucketPublicAccessBlock", "s3:ListBucket"],
            scope.bucket(settings.mwaa_bucket),
        ),
        allow(["s3:GetObject", "s3:GetObjectVersion"], scope.objects("", bucket=settings.mwaa_bucket)),
        allow(["s3:GetAccountPublicAccessBlock"], "*"),
        allow(
            [
                "logs:CreateLogStream",
                "logs:CreateLogGroup",
                "logs:PutLogEvents",
                "logs:GetLogEvents",
                "logs:GetLogRecord",
                "logs:GetLogGroupFields",
                "logs:GetQueryResults",
            ],
            scope.arn("logs", f"log-group:airflow-{environment}-*"),
        ),
        allow(["logs:DescribeLogGroups"], "*"),
        allow(["cloudwatch:PutMetricData"], "*"),
        allow(
            [
                "sqs:ChangeMessageVisibility",
                "sqs:DeleteMessage",
                "sqs:GetQueueAttributes",
                "sqs:GetQueueUrl",
                "sqs:ReceiveMessage",
                "sqs:SendMessage",
            ],
            f"arn:{scope.partition}:sqs:{scope.region}:*:airflow-celery-*",
        ),
        {
            "Effect": "Allow",
            "Action": ["kms:Decrypt", "kms:DescribeKey", "kms:GenerateDataKey", "kms:Encrypt"],
            "NotResource": f"arn:{scope.partition}:kms:*:{scope.account}:key/*",
            "Condition": {"StringLike": {"kms:ViaService": [f"sqs.{scope.region}.amazonaws.com"]}},
        },
        allow(
            ["emr-serverless:GetApplication", "emr-serverless:StartApplication", "emr-serverless:StartJobRun"],
            applications,
            **tagged,
        ),
        allow(
            ["emr-serverless:GetJobRun", "emr-serverless:CancelJobRun"],
            f"{applications}/jobruns/*",
            **tagged,
        ),
        allow(
            ["iam:PassRole"],
            scope.role("emr-job"),
            StringEquals={"iam:PassedToService": "emr-serverless.amazonaws.com"},
        ),
    ]


def roles(scope: Scope) -> list[Role]:
    """Every role but API Gateway's (`ensure_api_role`, which provisioning's `api` step also creates on its own)."""
    source = {"StringEquals": {"aws:SourceAccount": scope.account}}
    parts = [
        Role("ec2-client", "The EC2 client: REST proxy, Connect worker, provisioning", ("ec2.amazonaws.com",),
             ec2_client_statements(scope), instance_profile=True),
        Role("msk-connect", "MSK Connect's service execution role for the S3 sink", ("kafkaconnect.amazonaws.com",),
             msk_connect_statements(scope), extra_trust=source),
        Role("emr-job", "EMR Serverless job runtime role: batch and streaming jobs", ("emr-serverless.amazonaws.com",),
             runner_access(scope), extra_trust=source),
        Role("databricks", "Databricks clusters' instance profile: batch and streaming jobs", ("ec2.amazonaws.com",),
             runner_access(scope), instance_profile=True),
    ]  # fmt: skip
    if settings_have_mwaa(scope.settings):
        parts.append(Role("mwaa", "MWAA execution role: the daily DAG",
                          ("airflow.amazonaws.com", "airflow-env.amazonaws.com"), mwaa_statements(scope),
                          extra_trust=source))  # fmt: skip
    return parts


def settings_have_mwaa(settings: Settings) -> bool:
    return bool(settings.mwaa_environment_name and settings.mwaa_bucket)


def made_parts(settings: Settings) -> tuple[str, ...]:
    """The parts whose roles provisioning makes with these settings."""
    return PARTS if settings_have_mwaa(settings) else tuple(part for part in PARTS if part != "mwaa")


# --- creating them -----------------------------------------------------------------------------------------------
class IamDenied(Exception):
    """The caller may not create or change IAM roles: the documents are emitted instead."""


def _client(settings: Settings, service: str):
    return boto3.client(service, **settings.boto3_client_kwargs(service))


def resource_tags(settings: Settings) -> dict[str, str]:
    """The tags of every resource made here and in msk_connect.py (teardown deletes only what carries them)."""
    return {"project": "pinterest-pipeline", "pipeline-user-id": settings.pipeline_user_id}


def _tags(settings: Settings) -> list[dict[str, str]]:
    return [{"Key": key, "Value": value} for key, value in resource_tags(settings).items()]


def _upsert_role(settings: Settings, iam, name: str, trust: dict[str, Any], description: str) -> tuple[dict, str]:
    try:
        role = iam.get_role(RoleName=name)["Role"]
    except iam.exceptions.NoSuchEntityException:
        try:
            role = iam.create_role(
                RoleName=name,
                AssumeRolePolicyDocument=json.dumps(trust),
                Description=description,
                Tags=_tags(settings),
            )["Role"]
        except ClientError as error:
            if error.response["Error"]["Code"] in DENIED:
                raise IamDenied(f"create_role {name}: {error.response['Error'].get('Message', '')}") from error
            raise
        return role, "created"
    return role, "updated"


def ensure_api_role(settings: Settings, iam, actions: list[str] | None = None) -> tuple[str, str]:
    """API Gateway's execution role for the Kinesis routes; a pre-created role that may not be changed is used as is
    (accounts handed out for courses often pre-create it and deny IAM writes)."""
    name = settings.role_name
    trust = trust_policy("apigateway.amazonaws.com")
    role, action = _upsert_role(settings, iam, name, trust, "Lets API Gateway call Kinesis for the pipeline")
    try:
        if action == "updated":
            iam.update_assume_role_policy(RoleName=name, PolicyDocument=json.dumps(trust))
        document = json.dumps(kinesis_policy(settings, role["Arn"], actions))
        iam.put_role_policy(RoleName=name, PolicyName=API_POLICY_NAME, PolicyDocument=document)
    except ClientError as error:
        if error.response["Error"]["Code"] not in DENIED:
            raise
        return role["Arn"], f"using existing execution role {role['Arn']} as is (no permission to update it)"
    return role["Arn"], f"{action} execution role {role['Arn']}"


def _trust(role: Role) -> dict[str, Any]:
    return trust_policy(*role.trusted, **role.extra_trust)


def ensure_role(settings: Settings, iam, role: Role) -> list[str]:
    """Create or update one role, its inline policy and (for EC2) its instance profile; idempotent."""
    name = settings.iam_name(role.part)
    found, action = _upsert_role(settings, iam, name, _trust(role), role.description)
    try:
        if action == "updated":
            iam.update_assume_role_policy(RoleName=name, PolicyDocument=json.dumps(_trust(role)))
        iam.put_role_policy(RoleName=name, PolicyName=name, PolicyDocument=json.dumps(policy(role.statements)))
        lines = [f"{action} role {found['Arn']} (policy {name}, trusted by {', '.join(role.trusted)})"]
        if role.instance_profile:
            lines.append(_ensure_instance_profile(settings, iam, name))
    except ClientError as error:
        if error.response["Error"]["Code"] in DENIED:
            raise IamDenied(f"updating role {name}: {error.response['Error'].get('Message', '')}") from error
        raise
    return lines


def _ensure_instance_profile(settings: Settings, iam, name: str) -> str:
    try:
        profile = iam.get_instance_profile(InstanceProfileName=name)["InstanceProfile"]
        action = "found"
    except iam.exceptions.NoSuchEntityException:
        profile = iam.create_instance_profile(InstanceProfileName=name, Tags=_tags(settings))["InstanceProfile"]
        action = "created"
    if name not in [role["RoleName"] for role in profile.get("Roles", [])]:
        iam.add_role_to_instance_profile(InstanceProfileName=name, RoleName=name)
    return f"{action} instance profile {profile['Arn']} (role {name})"


def account_scope(settings: Settings) -> Scope:
    identity = _client(settings, "sts").get_caller_identity()
    return Scope(settings, identity["Arn"].split(":")[1], identity["Account"])


def documents(settings: Settings, scope: Scope) -> dict[str, dict[str, Any]]:
    """Every role's trust and permission documents, by file name (what `--emit-policies` writes)."""
    api_role = scope.arn("iam", f"role/{settings.role_name}", region=False)
    files = {
        f"{settings.role_name}.trust.json": trust_policy("apigateway.amazonaws.com"),
        f"{settings.role_name}.policy.json": kinesis_policy(settings, api_role),
    }
    for role in roles(scope):
        name = settings.iam_name(role.part)
        files[f"{name}.trust.json"] = _trust(role)
        files[f"{name}.policy.json"] = policy(role.statements)
    return files


def emit_policies(settings: Settings, scope: Scope, directory: Path) -> list[str]:
    directory.mkdir(parents=True, exist_ok=True)
    for file_name, document in documents(settings, scope).items():
        (directory / file_name).write_text(json.dumps(document, indent=2) + "\n")
    return [
        f"wrote {len(documents(settings, scope))} policy documents to {directory}: an administrator creates each role "
        "<name> from <name>.trust.json with the inline policy <name>.policy.json (EC2 roles also need an instance "
        "profile of the same name)"
    ]


def provision_iam(settings: Settings, dry_run: bool, emit_dir: Path | None = None) -> list[str]:
    """Create or update every role (or, without IAM write rights or with `emit_dir`, write their documents)."""
    if settings.pipeline_target != "aws":
        return ["skipped: PIPELINE_TARGET=local (LocalStack checks no permissions; the api step makes its role)"]
    if dry_run:
        lines = [f"would ensure role {settings.role_name} (API Gateway -> Kinesis)"]
        lines += [f"would ensure role {settings.iam_name(part)}" for part in made_parts(settings)]
        if "mwaa" not in made_parts(settings):
            lines.append("no MWAA role: set MWAA_ENVIRONMENT_NAME and MWAA_BUCKET to have one")
        return lines
    scope = account_scope(settings)
    if emit_dir is not None:
        return emit_policies(settings, scope, emit_dir)
    iam = _client(settings, "iam")
    try:
        lines = [ensure_api_role(settings, iam)[1]]
        for role in roles(scope):
            lines += ensure_role(settings, iam, role)
    except IamDenied as denied:
        fallback = settings.state_dir / "iam-policies"
        return [f"no IAM write permission ({denied})", *emit_policies(settings, scope, fallback)]
    return lines


def requires(settings: Settings) -> list[str]:
    """The settings the policies need (no AWS call)."""
    if not settings.msk_cluster_arn:
        return ["MSK_CLUSTER_ARN is not set: set it to the MSK cluster's ARN (the policies name its topics and groups)"]
    return []


def deprovision_iam(settings: Settings, dry_run: bool) -> list[str]:
    """Delete the roles `provision_iam` made (with their inline policies and instance profiles), found by name and
    only with the project's tags; a same-named role without them is kept and reported."""
    iam = _client(settings, "iam")
    wanted = resource_tags(settings)
    lines = []
    for name in (settings.role_name, *(settings.iam_name(part) for part in PARTS)):
        try:
            tags = {t["Key"]: t["Value"] for t in iam.list_role_tags(RoleName=name).get("Tags", [])}
        except iam.exceptions.NoSuchEntityException:
            continue
        what = f"IAM role {name}"
        if any(tags.get(key) != value for key, value in wanted.items()):
            lines.append(f"keep {what}: it lacks the tags {wanted}, provisioning did not make it")
            continue
        profiles = iam.list_instance_profiles_for_role(RoleName=name).get("InstanceProfiles", [])
        ours = [p["InstanceProfileName"] for p in profiles if p["InstanceProfileName"] == name]
        what += f" and instance profile {name}" if ours else ""
        if dry_run:
            lines.append(f"would delete {what}")
            continue
        for profile in profiles:
            iam.remove_role_from_instance_profile(InstanceProfileName=profile["InstanceProfileName"], RoleName=name)
        for profile_name in ours:
            iam.delete_instance_profile(InstanceProfileName=profile_name)
        for policy_name in iam.list_role_policies(RoleName=name).get("PolicyNames", []):
            iam.delete_role_policy(RoleName=name, PolicyName=policy_name)
        for attached in iam.list_attached_role_policies(RoleName=name).get("AttachedPolicies", []):
            iam.detach_role_policy(RoleName=name, PolicyArn=attached["PolicyArn"])
        iam.delete_role(RoleName=name)
        lines.append(f"deleted {what}")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.provision.iam", description=__doc__.splitlines()[0])
    parser.add_argument("--emit-policies", type=Path, metavar="DIR", help="write the documents, create nothing")
    args = parser.parse_args(argv)
    settings = get_settings()
    for line in provision_iam(settings, dry_run=False, emit_dir=args.emit_policies):
        print(f"  [iam] {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
