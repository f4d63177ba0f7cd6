"""What the unit tests of the aws target share: an environment in which no real AWS account can be reached."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


def fake_account(monkeypatch: pytest.MonkeyPatch, folder: Path, prefixes: tuple[str, ...] = ()) -> None:
    """Unset the variables starting with `prefixes` (settings a developer's shell may hold), then give boto3 fake
    credentials and no user config files, so moto's `mock_aws` serves every call and nothing reaches an account."""
    for name in list(os.environ):
        if prefixes and name.startswith(prefixes):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(folder / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(folder / "none"))
