"""A real S3 server on loopback for tests: moto's `moto_server` behind a fault-injecting proxy.

The server is moto's (`moto_server`, from PyPI `moto[server]`): the S3-compatible server s3fs's
own test suite runs against, installable here with pip (MinIO's server is a Go binary that is not
on PyPI or in Debian). winnow talks to it through s3fs/botocore exactly as it would to AWS: the
endpoint comes from the standard `AWS_ENDPOINT_URL` variable. In front of it sits a small
forwarding proxy, which can fail chosen requests (a 503 SlowDown on the first PUT of a key; 403
AccessDenied under a read-only prefix): faults the real server does not make on demand.

Use: `from s3_server import S3, s3, BUCKET` in a test module (pytest then finds the module-scoped
fixture `s3`); `s3.env` is the environment for processes that should use the server, with
credentials and `AWS_ENDPOINT_URL`; `s3.client` is a boto3 client; `s3.proxy` injects faults.
"""

from __future__ import annotations

import hashlib
import http.client
import http.server
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

BIN = Path(sys.executable).parent
#: The bucket the fixture creates.
BUCKET = "winnow"


def free_port() -> int:
    """A TCP port free on loopback now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class FaultProxy(http.server.ThreadingHTTPServer):
    """Forwards every request to the S3 server; `fail_once` keys answer their first PUT with 503
    SlowDown, keys under a `deny` prefix answer every PUT with 403 AccessDenied. `puts` counts
    PUT requests per path, `got` the body bytes of GET answers per path."""

    daemon_threads = True

    def __init__(self, upstream_port: int):
        super().__init__(("127.0.0.1", 0), _ProxyHandler)
        self.upstream_port = upstream_port
        self.fail_once: set[str] = set()
        self.deny: tuple[str, ...] = ()
        self.puts: dict[str, int] = {}
        self.got: dict[str, int] = {}
        self.lock = threading.Lock()


class _ProxyHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:
        pass

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            out = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return out
                out += self.rfile.read(size)
                self.rfile.readline()
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def _error(self, status: int, code: str) -> None:
        body = (f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code><Message>{code} (test proxy)'
                f'</Message></Error>').encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _forward(self) -> None:
        server: FaultProxy = self.server  # type: ignore[assignment]
        body = self._body()
        path = self.path.split("?", 1)[0]
        if self.command == "PUT":
            with server.lock:
                server.puts[path] = server.puts.get(path, 0) + 1
                first_failure = path in server.fail_once
                server.fail_once.discard(path)
            if any(path.startswith(p) for p in server.deny):
                return self._error(403, "AccessDenied")
            if first_failure:
                return self._error(503, "SlowDown")
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("transfer-encoding", "connection")}
        headers["Content-Length"] = str(len(body))
        conn = http.client.HTTPConnection("127.0.0.1", server.upstream_port, timeout=60)
        try:
            conn.request(self.command, self.path, body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
        finally:
            conn.close()
        self.send_response(resp.status)
        head = self.command == "HEAD"  # a HEAD answer's Content-Length is the object's size
        for k, v in resp.getheaders():
            if k.lower() not in ("transfer-encoding", "connection") and (head or k.lower() != "content-length"):
                self.send_header(k, v)
        if not head:
            self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command == "GET":
            with server.lock:
                server.got[path] = server.got.get(path, 0) + len(data)
        if self.command != "HEAD":
            self.wfile.write(data)

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _forward


class S3:
    """The running server: `env` for processes that should use it, `client` (boto3, direct)."""

    def __init__(self, endpoint: str, proxy: FaultProxy):
        import boto3

        self.endpoint = endpoint
        self.proxy = proxy
        self.env = {**os.environ, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                    "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL": endpoint, "RAY_ADDRESS": "",
                    "AWS_EC2_METADATA_DISABLED": "true"}
        self.env.pop("AWS_PROFILE", None)
        self.client = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="testing",
                                   aws_secret_access_key="testing", region_name="us-east-1")

    def keys(self, prefix: str) -> dict[str, bytes]:
        """Every object under `prefix` in the bucket: key relative to `prefix` -> bytes."""
        out = {}
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix):
            for obj in page.get("Contents", []):
                out[obj["Key"][len(prefix):]] = self.client.get_object(Bucket=BUCKET, Key=obj["Key"])["Body"].read()
        return out


@pytest.fixture(scope="module")
def s3() -> Iterator[S3]:
    port = free_port()
    log = tempfile.TemporaryFile()
    server = subprocess.Popen([str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
                              stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    proxy = FaultProxy(port)
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert server.poll() is None and time.monotonic() < deadline, "moto_server did not start"
                time.sleep(0.2)
        s = S3(f"http://127.0.0.1:{proxy.server_address[1]}", proxy)
        s.client.create_bucket(Bucket=BUCKET)
        yield s
    finally:
        proxy.shutdown()
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


def remote_digests(objects: dict[str, bytes]) -> dict[str, str]:
    """sha256 of every data and rejected object of a stage directory's `S3.keys` listing."""
    return {k: hashlib.sha256(v).hexdigest() for k, v in objects.items() if k.split("/", 1)[0] in ("data", "rejected")}


def object_count(s3: "S3", prefix: str) -> int:
    """How many objects sit under `prefix` in the test bucket (e.g. a stage's `_progress/`)."""
    return sum(len(page.get("Contents", []))
               for page in s3.client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix))


def kill_when(proc: subprocess.Popen, ready: Any, what: str, timeout_s: float = 600, poll_s: float = 0.05) -> None:
    """SIGKILL the process group of `proc` (started with `start_new_session=True`) as soon as
    `ready()` is true: a run killed part-way, for the resume tests. Fails if the run ends first
    or `ready()` never comes (`what` names what was awaited)."""
    deadline = time.monotonic() + timeout_s
    while not ready():
        assert proc.poll() is None, "the run ended before it could be killed"
        assert time.monotonic() < deadline, f"{what} never happened"
        time.sleep(poll_s)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
