"""Settings for an integration test of the API Gateway front door on the local stack: a test user of its own and a
temporary state folder (the user's invoke URL and key are never touched), LocalStack checked first."""

from __future__ import annotations

import httpx
import pytest

from pipeline.settings import Settings, load_settings


def gateway_test_settings(tmp_path_factory: pytest.TempPathFactory, user: str, **overrides: object) -> Settings:
    settings = load_settings(pipeline_user_id=user, state_dir=tmp_path_factory.mktemp(f"state-{user}"), **overrides)
    if settings.pipeline_target != "local":
        pytest.skip("gateway integration tests run against the local stack (PIPELINE_TARGET=local)")
    try:
        httpx.get(f"{settings.aws_endpoint_url}/_localstack/health", timeout=5).raise_for_status()
    except httpx.HTTPError as error:
        pytest.fail(f"LocalStack not answering at {settings.aws_endpoint_url} ({error}); run `make up` first")
    return settings
