"""services/localstack/site/sitecustomize.py inside LocalStack's own interpreter (its venv, as the service runs it):
each patch is applied to the real LocalStack modules and keeps their behaviour. The speed they bring is measured by
scripts/bench/bench_gateway.py; the whole gateway on the running stack by tests/integration/test_gateway.py."""

from __future__ import annotations

import json
import os
import socket
import subprocess

from pipeline.settings import load_settings
from services.localstack.service import SITE_DIR, venv_python

SCRIPT = r"""
import http.server, json, threading
from localstack.services.apigateway.next_gen.execute_api import template_mapping
from localstack.services.apigateway.next_gen.execute_api.handlers import method_request
from localstack.services.apigateway.next_gen.execute_api.integrations import aws, http as http_integration
from localstack.services.kinesis.provider import KinesisProvider
from localstack.utils.aws.templating import VtlTemplate
import jsonschema

seen = []
class Backend(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        seen.append({"path": self.path, "date": self.headers.get("X-Amz-Date"), "body": body.decode()})
        self.send_response(200); self.send_header("Content-Length", "2"); self.end_headers(); self.wfile.write(b"{}")
    def log_message(self, *args):
        pass
server = http.server.ThreadingHTTPServer(("127.0.0.1", PORT), Backend)
threading.Thread(target=server.serve_forever, daemon=True).start()

out = {"forward_url": KinesisProvider.get_forward_url(None, "000000000000", "us-east-1")}
out["jsonpath"] = [template_mapping.extract_jsonpath({"a": {"b": [1, 2]}}, "$.a.b") for _ in range(2)]
out["jsonpath_cached"] = template_mapping.parse.cache_info().hits
schema = {"type": "object", "required": ["records"], "properties": {"records": {"type": "array"}}}
method_request.validate(instance={"records": []}, schema=schema)
for instance, bad_schema in (({}, schema), ({"records": 1}, schema), ({}, {"type": 5})):
    try:
        method_request.validate(instance=instance, schema=bad_schema)
        out.setdefault("errors", []).append("passed")
    except jsonschema.SchemaError:
        out.setdefault("errors", []).append("SchemaError")
    except jsonschema.ValidationError as error:
        out.setdefault("errors", []).append(error.message)
template = '{"n": $n, "twice": "$n$n"}'
out["rendered"] = [VtlTemplate().render_vtl(template, {"n": n}) for n in (1, 2)]
kinesis = aws.requests.request("POST", "http://127.0.0.1:9/", params={"Action": "PutRecord"},
                               headers={"X-Amz-Target": "Kinesis_20131202.PutRecord"}, data=b'{"k": 1}')
other = http_integration.requests.request("POST", f"http://127.0.0.1:{PORT}/proxy", data=b"x")
out["status"] = [kinesis.status_code, other.status_code]
out["seen"] = seen
print(json.dumps(out))
"""


def run_in_localstack(port: int) -> dict:
    python = venv_python(load_settings(_env_file=None))
    env = {**os.environ, "PYTHONPATH": str(SITE_DIR), "KINESIS_BACKEND_URL": f"http://127.0.0.1:{port}"}
    result = subprocess.run(
        [str(python), "-c", SCRIPT.replace("PORT", str(port))], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_the_patches_keep_localstacks_behaviour():
    port = free_port()
    out = run_in_localstack(port)
    assert out["forward_url"] == f"http://127.0.0.1:{port}", "Kinesis goes to the store"
    assert out["jsonpath"] == [[1, 2], [1, 2]] and out["jsonpath_cached"] >= 1
    assert out["errors"][0] == "'records' is a required property"
    assert out["errors"][1] == "1 is not of type 'array'"
    assert out["errors"][2] == "SchemaError", "an invalid model schema is still refused"
    assert out["rendered"] == ['{"n": 1, "twice": "11"}', '{"n": 2, "twice": "22"}'], "a cached template renders anew"
    assert out["status"] == [200, 200]
    kinesis, other = out["seen"]
    assert kinesis["path"].startswith("/") and kinesis["body"] == '{"k": 1}' and kinesis["date"], "sent to the store"
    assert other == {"path": "/proxy", "date": None, "body": "x"}, "other integrations keep their URL"


LISTEN_SCRIPT = r"""
from rolo.gateway import Gateway
from localstack import config
from localstack.runtime.server.twisted import TwistedRuntimeServer
TwistedRuntimeServer().register(Gateway(), config.GATEWAY_LISTEN)
port = config.GATEWAY_LISTEN[0].port
listening = [line.split()[1] for line in open("/proc/net/tcp").read().splitlines()[1:] if line.split()[3] == "0A"]
print([address for address in listening if int(address.split(":")[1], 16) == port])
"""


def test_the_gateway_listens_on_the_configured_host_only():
    """LocalStack's twisted server bound GATEWAY_LISTEN's port on every interface (0.0.0.0)."""
    port = free_port()
    python = venv_python(load_settings(_env_file=None))
    env = {
        **os.environ,
        "PYTHONPATH": str(SITE_DIR),
        "KINESIS_BACKEND_URL": "http://127.0.0.1:9",
        "GATEWAY_LISTEN": f"127.0.0.1:{port}",
    }
    result = subprocess.run([str(python), "-c", LISTEN_SCRIPT], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    # /proc/net/tcp: the address as little-endian hex; 0100007F is 127.0.0.1, 00000000 would be 0.0.0.0
    assert result.stdout.strip().splitlines()[-1] == f"['0100007F:{port:04X}']"
