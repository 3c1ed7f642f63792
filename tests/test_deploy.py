"""The central server's nginx site (deploy/nginx-kiosk-central.conf) with the real nginx, as a regency runs it:
the repository's file, only its certificate paths, ports, logs and static folder moved to a temporary folder, in front
of a small loopback backend that reports the headers it receives."""

from __future__ import annotations

import http.client
import http.server
import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SITE = REPO / "deploy" / "nginx-kiosk-central.conf"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Echo(http.server.BaseHTTPRequestHandler):
    """Answers every request with the headers it got (what the site would see behind the proxy)."""

    def _reply(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        body = json.dumps({k.lower(): v for k, v in self.headers.items()} | {"_path": self.path}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _reply

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def proxy(tmp_path: Path) -> Iterator[tuple[int, int, Path]]:
    """(https port, http port, static folder) of nginx running the site in front of the echo backend."""
    nginx = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/sbin")
    if nginx is None:
        pytest.fail("nginx is missing: run scripts/bootstrap (it installs Debian's nginx-light)")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(tmp_path / "key.pem"),
                    "-out", str(tmp_path / "cert.pem"), "-days", "1", "-subj", "/CN=presensi.example.go.id"],
                   check=True, capture_output=True)  # fmt: skip
    backend = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    threading.Thread(target=backend.serve_forever, daemon=True).start()
    https, plain, static = free_port(), free_port(), tmp_path / "static"
    static.mkdir()
    (static / "hr.css").write_text("body{}")
    site = SITE.read_text()
    for old, new in (("/etc/ssl/kiosk-central/fullchain.pem", str(tmp_path / "cert.pem")),
                     ("/etc/ssl/kiosk-central/privkey.pem", str(tmp_path / "key.pem")),
                     ("/var/lib/kiosk-central/static/", f"{static}/"),
                     ("/var/log/nginx/", f"{tmp_path}/"),
                     ("127.0.0.1:8080", f"127.0.0.1:{backend.server_address[1]}")):  # fmt: skip
        assert old in site, old
        site = site.replace(old, new)
    site = re.sub(r"listen 443 ", f"listen 127.0.0.1:{https} ", site)
    site = re.sub(r"listen 80;", f"listen 127.0.0.1:{plain};", site)
    site = re.sub(r"\s*listen \[::\]:\d+[^;]*;", "", site)
    (tmp_path / "site.conf").write_text(site)
    # As root, nginx's workers would run as nobody and could not read the test's private temporary folder.
    user = "user root;\n" if os.geteuid() == 0 else ""
    (tmp_path / "nginx.conf").write_text(
        f"{user}pid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/error.log;\nevents {{}}\n"
        f"http {{\n include /etc/nginx/mime.types;\n client_body_temp_path {tmp_path}/body;\n"
        f" proxy_temp_path {tmp_path}/proxy;\n include {tmp_path}/site.conf;\n}}\n"
    )
    check = subprocess.run([nginx, "-t", "-c", str(tmp_path / "nginx.conf"), "-p", str(tmp_path)],
                           capture_output=True, text=True)  # fmt: skip
    assert check.returncode == 0, check.stderr
    server = subprocess.Popen([nginx, "-c", str(tmp_path / "nginx.conf"), "-p", str(tmp_path), "-g", "daemon off;"],
                              stderr=subprocess.PIPE)  # fmt: skip
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", https), timeout=1).close()
                break
            except OSError:
                assert server.poll() is None and time.monotonic() < deadline, "nginx did not start"
                time.sleep(0.05)
        yield https, plain, static
    finally:
        server.terminate()
        server.wait(10)
        backend.shutdown()


def request(port: int, method: str = "GET", path: str = "/", body: bytes | None = None,
            headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=10)
    try:
        conn.request(method, path, body=body, headers={"Host": "presensi.example.go.id"} | (headers or {}))
        reply = conn.getresponse()
        return reply.status, {k.lower(): v for k, v in reply.getheaders()}, reply.read()
    finally:
        conn.close()


def test_the_site_proxies_with_tls_hsts_and_the_headers_the_site_trusts(proxy: tuple[int, int, Path]) -> None:
    https, plain, _ = proxy
    status, headers, body = request(https, path="/recap/?month=2026-02")
    seen = json.loads(body)
    assert status == 200 and seen["_path"] == "/recap/?month=2026-02"
    assert seen["x-forwarded-proto"] == "https"  # SECURE_PROXY_SSL_HEADER: Django sees the request as secure
    assert seen["host"] == "presensi.example.go.id" and seen["x-forwarded-for"] == "127.0.0.1"
    assert headers["strict-transport-security"].startswith("max-age=63072000")
    assert "server" not in headers or "nginx/" not in headers["server"]  # server_tokens off
    css = request(https, path="/static/hr.css")
    assert css[0] == 200 and css[2] == b"body{}" and "strict-transport-security" in css[1]  # served by nginx
    conn = http.client.HTTPConnection("127.0.0.1", plain, timeout=10)
    conn.request("GET", "/login/", headers={"Host": "presensi.example.go.id"})
    redirect = conn.getresponse()
    assert redirect.status == 301 and redirect.getheader("Location") == "https://presensi.example.go.id/login/"
    conn.close()


def test_bodies_over_the_limit_are_refused_before_the_site(proxy: tuple[int, int, Path]) -> None:
    https, _, _ = proxy
    assert request(https, "POST", "/roster/", body=b"x" * (6 << 20))[0] == 413  # client_max_body_size 5m
    assert request(https, "POST", "/roster/", body=b"x" * (1 << 20))[0] == 200
    # a claimed length nginx will not wait for: refused at once
    assert request(https, "POST", "/roster/", headers={"Content-Length": str(10 << 30)})[0] == 413
