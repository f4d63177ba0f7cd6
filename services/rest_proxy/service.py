"""The REST proxy as a native service: `python -m services.rest_proxy` under supervisord, after Kafka.

Ready means a real `GET /v3/clusters` answered 200 with a cluster id, which the proxy only gets from a metadata
request to the broker; so "ready" proves both the HTTP server and its way to Kafka.
"""

from __future__ import annotations

import sys

from pipeline.settings import REPO_ROOT, Settings
from services.contract import NotReady, Service, get_ok


def ready(settings: Settings) -> None:
    url = f"{settings.rest_proxy_url.rstrip('/')}/v3/clusters"
    response = get_ok(url, timeout=5)
    clusters = response.json().get("data") or []
    if not clusters or not clusters[0].get("cluster_id"):
        raise NotReady(f"GET {url} listed no cluster: {response.text[:200]}")


def service(settings: Settings) -> Service:
    return Service(
        name="rest_proxy",
        command=[sys.executable, "-m", "services.rest_proxy"],
        ports=(settings.rest_proxy_port,),
        ready=ready,
        where=f"{settings.rest_proxy_url} (Confluent REST Proxy API v2/v3; OpenAPI at /openapi.json)",
        depends_on=("kafka",),
        directory=REPO_ROOT,
        ready_timeout=60,
        stop_timeout=20,
    )
