"""Local servers for tests: a small HTTP endpoint (a webhook receiver or an SMS gateway) and
a Redis of the test's own.

The endpoint listens on 127.0.0.1 on a free port, records every request as received
(headers, raw body and the time it arrived) and answers each from a scripted list of status
codes, then with `then` once the list is used up, after `delay` seconds (a slow receiver; the
test may change it while the endpoint runs). Given a TLS context, it speaks https.
"""

import json
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from redis import Redis

STARTUP_SECONDS = 30


@dataclass(frozen=True)
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    status: int
    # time.time() when the request arrived, before the endpoint's delay.
    at: float

    def json(self):
        return json.loads(self.body)


class Endpoint:
    """Use as a context manager: the server runs inside the `with` block."""

    def __init__(
        self,
        statuses: Iterable[int] = (),
        then: int = 200,
        path: str = "/hook",
        tls: ssl.SSLContext | None = None,
        delay: float = 0.0,
    ):
        self.path = path
        self.delay = delay
        self._scheme = "https" if tls else "http"
        self._script = list(statuses)
        self._then = then
        self._lock = threading.Lock()
        self._received: list[Received] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        if tls:
            self._server.socket = tls.wrap_socket(self._server.socket, server_side=True)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"{self._scheme}://127.0.0.1:{self._server.server_port}{self.path}"

    @property
    def requests(self) -> list[Received]:
        with self._lock:
            return list(self._received)

    def __enter__(self) -> "Endpoint":
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def _answer(self, method: str, path: str, headers: dict[str, str], body: bytes) -> int:
        with self._lock:
            status = self._script.pop(0) if self._script else self._then
            self._received.append(Received(method, path, headers, body, status, time.time()))
        return status

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                status = endpoint._answer("POST", self.path, dict(self.headers), body)
                time.sleep(endpoint.delay)
                try:
                    self.send_response(status)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                except OSError:
                    pass  # the client gave up waiting (a time-out) or was killed

            def log_message(self, *args):
                pass

        return Handler


class RedisServer:
    """A `redis-server` of the test's own on a free port, without persistence: a restart
    comes back empty, as a crashed Redis without AOF would. On `port`, or a free one."""

    def __init__(self, folder: Path, port: int | None = None):
        self.port = port or free_port()
        self.folder = folder
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        command = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1"]
        command += ["--save", "", "--appendonly", "no", "--daemonize", "no"]
        command += ["--dir", str(self.folder)]
        self.process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        client = Redis(port=self.port, socket_connect_timeout=0.2)
        deadline = time.monotonic() + STARTUP_SECONDS
        while time.monotonic() < deadline:
            try:
                if client.ping():
                    return
            except Exception:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None


def free_port(candidates: Iterable[int] = (0,)) -> int:
    """The first of `candidates` nobody listens on (0: one the system picks)."""
    for candidate in candidates:
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", candidate))
            except OSError:
                continue
            return probe.getsockname()[1]
    raise RuntimeError(f"no free port among {candidates}")


def server_tls(name: str, directory: Path) -> tuple[ssl.SSLContext, Path]:
    """A TLS context serving a self-signed certificate for `name`, and the certificate's file
    (for the client to trust)."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path = directory / f"{name}.pem"
    key_path = directory / f"{name}.key"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_path, key_path)
    return context, cert_path
