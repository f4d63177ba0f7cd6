"""Make LocalStack's Kinesis a door to the stack's Kinesis store (kinesalite, services/kinesis) instead of kinesis-mock.

Loaded by Python at startup (`sitecustomize`) in LocalStack's process: native mode puts this folder on LocalStack's
`PYTHONPATH` (services/localstack/service.py), and so does Docker mode, which runs the same service definition. It
does nothing unless `KINESIS_BACKEND_URL` is set and LocalStack is importable, so other Python processes that inherit
the environment are not affected.

Why: LocalStack 4.9.2 serves Kinesis by forwarding every request, unchanged, to the URL that
`KinesisProvider.get_forward_url` returns: the kinesis-mock process it starts per account. kinesis-mock loses what it
acknowledged since its last snapshot on a kill -9, and its put cost grows with the records held (measured:
docs/design/kinesis-store.md). LocalStack has no working switch to another backend (`KINESIS_PROVIDER` is deprecated
and ignored), so two patches do it:
1. `get_forward_url` returns `KINESIS_BACKEND_URL`, so kinesis-mock never starts;
2. the forwarder keeps one proxy, and so kept-alive connections, per backend, where LocalStack builds a new proxy
   and a new connection for every request (`localstack.aws.forwarder.get_request_forwarder_http`), and it adds an
   `X-Amz-Date` header when the request has none: API Gateway's Kinesis integration sends LocalStack a mocked
   `Authorization` header without one, which kinesalite rejects (400 IncompleteSignatureException), as AWS would.
"""

from __future__ import annotations

import os


def _amz_date() -> str:
    import time

    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())


def _forward_kinesis_to_backend() -> None:
    backend = os.environ.get("KINESIS_BACKEND_URL", "").strip()
    if not backend:
        return
    try:
        from localstack.aws import forwarder
        from localstack.services.kinesis.provider import KinesisProvider
    except ImportError:
        return  # not LocalStack's interpreter
    if getattr(KinesisProvider.get_forward_url, "backend", None):
        return

    def get_forward_url(self, account_id: str, region_name: str) -> str:
        return backend

    get_forward_url.backend = backend
    KinesisProvider.get_forward_url = get_forward_url

    original = forwarder.get_request_forwarder_http

    def get_request_forwarder_http(forward_url_getter):
        proxies: dict[str, forwarder.AwsRequestProxy] = {}

        def forward_request(context, service_request=None):
            url = forward_url_getter(context.account_id, context.region)
            proxy = proxies.get(url)
            if proxy is None:
                proxy = proxies.setdefault(url, _dated_proxy(forwarder.AwsRequestProxy(url)))
            return proxy.forward(context, service_request)

        return forward_request

    get_request_forwarder_http.original = original
    forwarder.get_request_forwarder_http = get_request_forwarder_http


def _dated_proxy(aws_proxy):
    """`aws_proxy` with its HTTP proxy adding `X-Amz-Date` to requests that lack it."""
    http_forward = aws_proxy.proxy.forward

    def forward(request, forward_path=None, headers=None):
        extra = dict(headers or {})
        if "X-Amz-Date" not in request.headers and "Date" not in request.headers:
            extra["X-Amz-Date"] = _amz_date()
        return http_forward(request, forward_path=forward_path, headers=extra or None)

    aws_proxy.proxy.forward = forward
    return aws_proxy


_forward_kinesis_to_backend()
