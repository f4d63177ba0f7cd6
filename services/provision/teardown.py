"""`make deprovision [ARGS=--yes]` (`python -m services.provision.teardown [--yes] [--only STEP ...]`).

Deletes what `make provision` created on the aws target, and nothing else: each step's `deprovision` target
(services/provision/__main__.py) looks its resources up by the names settings give them AND requires the project's
tags (`settings.resource_tags`, set by provisioning), so a same-named resource someone else made is kept and
reported. Kafka topics have no tags: they are matched by their names (`<id>.pin|geo|user`) only.

First every step lists what it would delete (read calls only), then the user confirms (or `--yes`), then the steps
delete, in reverse provisioning order (the API before its role, the bucket last). Locally there is nothing that
costs money: `make down` and `make clean` remove the stack's state instead.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from pipeline.settings import Settings, get_settings


@dataclass(frozen=True)
class Found:
    """A resource a deprovision step found by name. `tags` is None for kinds of resources that carry none."""

    what: str
    tags: dict[str, str] | None
    delete: Callable[[], object]


def tagged(tags: dict[str, str], settings: Settings) -> bool:
    """Whether a resource's tags include all of the project's tags for this user."""
    return all(tags.get(key) == value for key, value in settings.resource_tags.items())


def sweep(settings: Settings, dry_run: bool, found: Iterable[Found]) -> list[str]:
    """Delete (or with `dry_run` list) each found resource that carries the project's tags; report the others."""
    lines = []
    for item in found:
        if item.tags is not None and not tagged(item.tags, settings):
            lines.append(f"keep {item.what}: it lacks the tags {settings.resource_tags}, provisioning did not make it")
        elif dry_run:
            lines.append(f"would delete {item.what}")
        else:
            item.delete()
            lines.append(f"deleted {item.what}")
    return lines


def tag_list(settings: Settings) -> list[dict[str, str]]:
    """The project's tags in the `[{"Key": ..., "Value": ...}]` form of IAM and S3."""
    return [{"Key": key, "Value": value} for key, value in settings.resource_tags.items()]


def role(settings: Settings, iam, name: str) -> list[Found]:
    """The IAM role `name` if it exists, with what deleting it takes: inline policies, attached policies and
    instance profiles go first (IAM refuses to delete a role that has any)."""
    try:
        iam.get_role(RoleName=name)
    except iam.exceptions.NoSuchEntityException:
        return []
    tags = {t["Key"]: t["Value"] for t in iam.list_role_tags(RoleName=name)["Tags"]}

    def delete() -> None:
        for policy in iam.list_role_policies(RoleName=name)["PolicyNames"]:
            iam.delete_role_policy(RoleName=name, PolicyName=policy)
        for policy in iam.list_attached_role_policies(RoleName=name)["AttachedPolicies"]:
            iam.detach_role_policy(RoleName=name, PolicyArn=policy["PolicyArn"])
        for profile in iam.list_instance_profiles_for_role(RoleName=name)["InstanceProfiles"]:
            iam.remove_role_from_instance_profile(InstanceProfileName=profile["InstanceProfileName"], RoleName=name)
        iam.delete_role(RoleName=name)

    return [Found(f"IAM role {name}", tags, delete)]


def main(argv: list[str] | None = None, settings: Settings | None = None, answer: Callable[[str], str] = input) -> int:
    from services.provision import preflight
    from services.provision.__main__ import selected, step_names
    from services.provision.steps import load, run_step

    parser = argparse.ArgumentParser(prog="python -m services.provision.teardown", description=__doc__.splitlines()[0])
    parser.add_argument("--yes", action="store_true", help="delete without asking")
    parser.add_argument("--only", nargs="*", choices=step_names(), help="steps to tear down")
    args = parser.parse_args(argv)
    settings = settings or get_settings()
    if settings.pipeline_target != "aws":
        print(
            "PIPELINE_TARGET=local: nothing costs money locally; `make down` then `make clean` remove the stack's state"
        )
        return 2
    steps = [step for step in reversed(selected(args.only)) if load(step.deprovision) is not None]
    preflight.check(settings, steps)
    print(f"what provisioning created for user {settings.pipeline_user_id} in {settings.aws_region}:")
    plan = {step.name: load(step.deprovision)(settings, True) for step in steps}
    for name, lines in plan.items():
        for line in lines:
            print(f"  [{name}] {line}")
    if not any(line.startswith("would delete") for lines in plan.values() for line in lines):
        print("nothing to delete")
        return 0
    if not args.yes:
        try:
            reply = answer("delete all of the above? type yes: ")
        except EOFError:
            reply = ""
        if reply.strip().lower() != "yes":
            print("nothing deleted")
            return 1
    for step in steps:
        run_step(step.name, load(step.deprovision), settings, False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
