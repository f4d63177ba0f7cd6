"""Patches to LocalStack 4.9.2, loaded at its start: its Kinesis is a door to the stack's Kinesis store (kinesalite,
services/kinesis) instead of kinesis-mock, and its API Gateway stops repeating per-request work.

Loaded by Python at startup (`sitecustomize`) in LocalStack's process: native mode puts this folder on LocalStack's
`PYTHONPATH` (services/localstack/service.py), and so does Docker mode, which runs the same service definition. It
does nothing unless `KINESIS_BACKEND_URL` is set and LocalStack is importable, so other Python processes that inherit
the environment are not affected.

Why the Kinesis patches: LocalStack serves Kinesis by forwarding every request, unchanged, to the URL that
`KinesisProvider.get_forward_url` returns: the kinesis-mock process it starts per account. kinesis-mock loses what it
acknowledged since its last snapshot on a kill -9, and its put cost grows with the records held (measured:
docs/design/kinesis-store.md). LocalStack has no working switch to another backend (`KINESIS_PROVIDER` is deprecated
and ignored), so:
1. `get_forward_url` returns `KINESIS_BACKEND_URL`, so kinesis-mock never starts;
2. the forwarder keeps one proxy, and so kept-alive connections, per backend, where LocalStack builds a new proxy
   and a new connection for every request (`localstack.aws.forwarder.get_request_forwarder_http`);
3. API Gateway's Kinesis integration calls go straight to the store (`_pool_the_gateways_integration_calls`).
Requests to the store get an `X-Amz-Date` header when they have none: API Gateway's integration signs with a mocked
`Authorization` header and no date, which kinesalite rejects (400 IncompleteSignatureException), as AWS would.

Why the gateway patches: each removes work LocalStack repeated on every request, found by profiling it
(docs/design/gateway.md): JSONPath compiled, schemas checked and templates parsed once, pooled connections.

Why the listen patch: LocalStack's twisted server (GATEWAY_SERVER=twisted) gives an IPv4 endpoint no interface (a
TODO in localstack/runtime/server/twisted.py), so `GATEWAY_LISTEN=127.0.0.1:4566` listened on 0.0.0.0:4566, every
interface of the machine: the endpoint now gets the host GATEWAY_LISTEN names for its port.
"""

from __future__ import annotations

import functools
import json
import os
import time


def _with_date(present, headers=None) -> dict:
    """`headers`, plus `X-Amz-Date` (now) when the request's headers `present` carry no date."""
    extra = dict(headers or {})
    if "X-Amz-Date" not in present and "Date" not in present:
        extra["X-Amz-Date"] = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    return extra


def _forward_kinesis_to_backend(backend: str) -> None:
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

    def get_request_forwarder_http(forward_url_getter):
        proxies: dict[str, forwarder.AwsRequestProxy] = {}

        def forward_request(context, service_request=None):
            url = forward_url_getter(context.account_id, context.region)
            proxy = proxies.get(url)
            if proxy is None:
                proxy = proxies.setdefault(url, _dated_proxy(forwarder.AwsRequestProxy(url)))
            return proxy.forward(context, service_request)

        return forward_request

    forwarder.get_request_forwarder_http = get_request_forwarder_http


def _dated_proxy(aws_proxy):
    """`aws_proxy` with its HTTP proxy adding `X-Amz-Date` to requests that lack it."""
    http_forward = aws_proxy.proxy.forward

    def forward(request, forward_path=None, headers=None):
        return http_forward(request, forward_path=forward_path, headers=_with_date(request.headers, headers) or None)

    aws_proxy.proxy.forward = forward
    return aws_proxy


def _cache_jsonpath_expressions() -> None:
    """API Gateway's mapping templates call `$input.path()`/`$input.json()`, and LocalStack compiles the JSONPath
    with `jsonpath_rw.parse` on every call, which builds a new PLY lexer and LR parser each time (it inspects its own
    source files to do so): most of LocalStack's CPU per gateway request in our profile. The compiled expressions
    are immutable, so the same path string is compiled once."""
    try:
        from localstack.services.apigateway.next_gen.execute_api import template_mapping
    except ImportError:
        return
    if hasattr(template_mapping.parse, "cache_info"):
        return
    template_mapping.parse = functools.lru_cache(maxsize=1024)(template_mapping.parse)


def _pool_the_gateways_integration_calls(backend: str) -> None:
    """API Gateway's integrations call their backends with `requests.request`, which opens (and closes) a new
    connection, with a DNS lookup, for every gateway request; here they share a pooled session per integration type
    (kept-alive connections; the same proxies and settings as `requests.request` otherwise).

    And the AWS integration sends its Kinesis calls over HTTP to LocalStack itself, where the whole AWS handler chain
    parses each one, dispatches it to the Kinesis provider, and forwards it to the store, then parses and re-serialises
    the answer: a second trip through LocalStack for every gateway request. Here a call whose `X-Amz-Target` is
    Kinesis's goes to the store at once, with the same method, headers (the integration's mocked signature, plus
    `X-Amz-Date`) and body, and the store's answer (status, headers, body) is the integration's response, as before.
    The one thing skipped is LocalStack's Kinesis provider, which adds nothing to PutRecord(s) but optional random
    failures (KINESIS_ERROR_PROBABILITY)."""
    try:
        import requests
        from localstack.services.apigateway.next_gen.execute_api.integrations import aws as aws_integration
        from localstack.services.apigateway.next_gen.execute_api.integrations import http as http_integration
    except ImportError:
        return
    for module, kinesis_backend in ((aws_integration, backend.rstrip("/") + "/"), (http_integration, None)):
        if not isinstance(module.requests, _PooledRequests):
            module.requests = _PooledRequests(module.requests, _pooled_session(requests), kinesis_backend)


def _pooled_session(requests):
    session = requests.Session()
    adapter = requests.adapters.HTTPAdapter(pool_connections=4, pool_maxsize=64)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


class _PooledRequests:
    """Stands in for the `requests` module inside an integration module: `request` goes through a pooled session
    (Kinesis calls to the store, when `kinesis_backend` is set); everything else (exceptions, ...) is the module's.

    Two more things AWS does and LocalStack 4.9.2 does not (its integrations leave the timeout as a TODO):
    - every integration call has the integration's deadline (`GATEWAY_TIMEOUT_MS`, which provisioning also sets as
      `timeoutInMillis`), so the gateway answers (5xx) before the emulator's own timeout (docs/design/ledger.md);
    - a Kinesis call the store refuses at connect time (the store is down, so nothing was written) is answered as
      Kinesis answers when it cannot serve: 503 `ServiceUnavailable`, which API Gateway passes on in its 5xx
      integration response, and which a client may retry. Without this LocalStack answers 502, which does not tell
      "not written" from "may be written". A connection lost after the request was sent stays an error (502).
    The REST proxy's integration keeps LocalStack's 500 for a refused connection, as API Gateway answers for an
    unreachable HTTP endpoint."""

    def __init__(self, module, session, kinesis_backend: str | None) -> None:
        self._module, self._session, self._kinesis_backend = module, session, kinesis_backend
        self._timeout = (CONNECT_TIMEOUT_S, int(os.environ.get("GATEWAY_TIMEOUT_MS", "29000")) / 1000)

    def request(self, method, url, **kwargs):
        kwargs.setdefault("timeout", self._timeout)
        headers = kwargs.get("headers") or {}
        if self._kinesis_backend and str(headers.get("X-Amz-Target", "")).startswith("Kinesis_"):
            kwargs["headers"] = _with_date(headers, headers)
            try:
                return self._session.request(method, self._kinesis_backend, **kwargs)
            except self._module.exceptions.ConnectionError as error:
                if not _refused(error):
                    raise
                return _service_unavailable(self._module, self._kinesis_backend, error)
        return self._session.request(method, url, **kwargs)

    def __getattr__(self, name):
        return getattr(self._module, name)


CONNECT_TIMEOUT_S = 5.0


def _refused(error) -> bool:
    """A connection that was never made (refused, or no answer to the connect): the request was not sent."""
    import urllib3

    reason = getattr(error.args[0], "reason", None) if error.args else None
    return isinstance(reason, urllib3.exceptions.NewConnectionError | urllib3.exceptions.ConnectTimeoutError)


def _service_unavailable(requests_module, url: str, error) -> object:
    response = requests_module.models.Response()
    response.status_code = 503
    response.url = url
    response.headers["Content-Type"] = "application/x-amz-json-1.1"
    message = f"The Kinesis store at {url} is not reachable ({type(error).__name__}); nothing was written."
    response._content = json.dumps({"__type": "ServiceUnavailable", "message": message}).encode()
    return response


def _compile_templates_and_schemas_once() -> None:
    """Two more costs LocalStack pays on every gateway request for what never changes between requests (our profile:
    together about 40 % of its CPU per request): it validates the request body with `jsonschema.validate`, which
    checks the model's schema against the JSON Schema meta-schema before validating the body, and it renders the
    mapping template with a new `airspeed.Template`, which parses the template again. Here a validator is built
    once per schema (exactly what `validate` does, minus the repetition), and a template is parsed once per text (an
    airspeed template's parsed body is only read when rendering)."""
    try:
        import airspeed
        from jsonschema import exceptions, validators
        from localstack.services.apigateway.next_gen.execute_api.handlers import method_request
        from localstack.utils.aws import templating
    except ImportError:
        return
    if getattr(method_request.validate, "cached", False):
        return
    checked: dict[str, object] = {}

    def validate(instance, schema, cls=None, *args, **kwargs):
        key = json.dumps(schema, sort_keys=True, default=str)
        validator = checked.get(key)
        if validator is None:
            kind = cls or validators.validator_for(schema)
            kind.check_schema(schema)
            validator = kind(schema, *args, **kwargs)
            if len(checked) > 256:
                checked.clear()
            checked[key] = validator
        error = exceptions.best_match(validator.iter_errors(instance))
        if error is not None:
            raise error

    validate.cached = True
    method_request.validate = validate
    templating.airspeed = _ParsedOnce(airspeed)


class _ParsedOnce:
    """Stands in for the `airspeed` module in LocalStack's templating: `Template(text)` is parsed once per text."""

    def __init__(self, module) -> None:
        self._module = module
        self._parsed = functools.lru_cache(maxsize=256)(self._parse)

    def _parse(self, content):
        template = self._module.Template(content)
        template.ensure_compiled()
        return template

    def Template(self, content, *args, **kwargs):
        if args or kwargs:
            return self._module.Template(content, *args, **kwargs)
        return self._parsed(content)

    def __getattr__(self, name):
        return getattr(self._module, name)


def _listen_on_the_gateway_host() -> None:
    hosts: dict[int, str] = {}
    for address in os.environ.get("GATEWAY_LISTEN", "").split(","):
        host, _, port = address.strip().rpartition(":")
        if host and not host.startswith("[") and port.isdigit():  # IPv6 endpoints already get their interface
            hosts.setdefault(int(port), host)
    try:
        from twisted.internet import endpoints  # does not install a reactor
    except ImportError:
        return
    original = endpoints.TCP4ServerEndpoint.__init__
    if not hosts or getattr(original, "hosts", None):
        return

    def __init__(self, reactor, port, backlog=50, interface=""):
        original(self, reactor, port, backlog, interface or hosts.get(port, ""))

    __init__.hosts = hosts
    endpoints.TCP4ServerEndpoint.__init__ = __init__


_backend = os.environ.get("KINESIS_BACKEND_URL", "").strip()
if _backend:
    _listen_on_the_gateway_host()
    _forward_kinesis_to_backend(_backend)
    _cache_jsonpath_expressions()
    _compile_templates_and_schemas_once()
    _pool_the_gateways_integration_calls(_backend)
