"""The native stack's services, in start order. Each later component adds its `services/<name>/service.py` here."""

from __future__ import annotations

from pipeline.settings import Settings
from services.mysql import service as mysql
from services.runner import Service


def all_services(settings: Settings) -> list[Service]:
    return [mysql.service(settings)]
