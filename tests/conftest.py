"""Fixtures shared by unit and integration tests."""

import json
import threading
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest


class _Server(ThreadingHTTPServer):
    # socketserver's default backlog of 5 drops connections under a burst of requests, which the client then
    # retries a second later: a delay no real gateway adds.
    request_queue_size = 128


class ScriptedServer:
    """Answers each request with the next scripted (status, body) and records what it received; a body given as
    (body, {header: value}) is sent with those headers too."""

    def __init__(self):
        self.script: deque = deque()
        self.default = None  # optional callable(request) -> (status, body) once the script is used up
        self.requests: list[dict] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self):
                length = int(self.headers.get("Content-Length", 0))
                body = self.rfile.read(length)
                server.requests.append(
                    {"method": self.command, "path": self.path, "headers": dict(self.headers), "body": body}
                )
                if server.script:
                    status, payload = server.script.popleft()
                elif server.default:
                    status, payload = server.default(server.requests[-1])
                else:
                    status, payload = 500, {"message": "unscripted"}
                if status == "drop":
                    self.connection.close()
                    return
                headers = {}
                if isinstance(payload, tuple):  # (body, extra headers)
                    payload, headers = payload
                data = json.dumps(payload).encode()
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_POST = do_PUT = _answer

            def log_message(self, *args):
                pass

        self.httpd = _Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def scripted_server():
    server = ScriptedServer()
    yield server
    server.close()
