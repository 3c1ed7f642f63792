"""A real mosquitto broker for tests: its own free 127.0.0.1 port, generated config, persistence in a temp dir.

Optional TLS (a test CA, a server certificate for 127.0.0.1 and client certificates made with ``cryptography``
at test time) and an optional ACL file. Use it as a context manager or through the ``broker`` fixtures in
tests/test_mqtt.py; ``stop()`` (also called on exit) always kills the process.

    with Broker(tmp_path / "broker", tls=True, acl="pattern write presensi/v1/+/%u/#\\n") as b:
        cert, key = b.client_cert("kiosk-1")
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import datetime
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import Any

MOSQUITTO = os.environ.get("KIOSK_TEST_MOSQUITTO") or shutil.which("mosquitto") or "/usr/sbin/mosquitto"


_RUNNING: set[subprocess.Popen[bytes]] = set()


def _kill_leftovers() -> None:
    for proc in list(_RUNNING):
        with contextlib.suppress(OSError):
            proc.kill()


atexit.register(_kill_leftovers)  # a test run that ends abnormally still leaves no broker behind


def _die_with_parent() -> None:
    """In the child before exec: SIGKILL it when the test process dies (Linux prctl PR_SET_PDEATHSIG)."""
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL, 0, 0, 0)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def available() -> bool:
    return Path(MOSQUITTO).exists()


class Broker:
    """One mosquitto process; ``start()``/``stop()``/``restart()`` keep the same port, config and persistence."""

    host = "127.0.0.1"

    def __init__(
        self,
        workdir: Path,
        *,
        tls: bool = False,
        require_certificate: bool = True,
        acl: str | None = None,
        port: int | None = None,
        crl: Path | None = None,
    ) -> None:
        self.dir = Path(workdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.dir, 0o700)
        self.port = port or free_port()
        self.tls = tls
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = self.dir / "mosquitto.log"
        self.data_dir = self.dir / "data"
        self.data_dir.mkdir(exist_ok=True)
        self.ca_file = self.dir / "ca.pem"
        self.acl_path = self.dir / "acl" if acl is not None else None
        if self.acl_path is not None and acl is not None:
            self.acl_path.write_text(acl, encoding="utf-8")
        lines = [
            f"listener {self.port} {self.host}",
            "allow_anonymous true",
            "user root",  # tests may run as root; never drop to the 'mosquitto' user who cannot read tmp dirs
            "persistence true",
            f"persistence_location {self.data_dir}/",
            f"log_dest file {self.log_path}",
            "log_type all",
            "max_inflight_messages 0",
        ]
        if tls:
            self._make_ca()
            server_cert, server_key = self._issue("127.0.0.1", server=True)
            lines += [f"cafile {self.ca_file}", f"certfile {server_cert}", f"keyfile {server_key}"]
            if require_certificate:
                lines += ["require_certificate true", "use_identity_as_username true"]
            if crl is not None:  # the file must exist when the broker starts
                lines.append(f"crlfile {crl}")
        if self.acl_path is not None:
            lines.append(f"acl_file {self.acl_path}")
        self.conf = self.dir / "mosquitto.conf"
        self.conf.write_text("\n".join(lines) + "\n", encoding="utf-8")

    # ------------------------------------------------------------------ process

    def start(self, timeout: float = 5.0) -> Broker:
        if self.proc is not None and self.proc.poll() is None:
            return self
        self.proc = subprocess.Popen(
            [MOSQUITTO, "-c", str(self.conf)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=open(self.dir / "stderr.log", "ab"),  # noqa: SIM115 - the child owns it
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        _RUNNING.add(self.proc)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited with {self.proc.returncode}: {self.logs()[-2000:]}")
            try:
                with socket.create_connection((self.host, self.port), timeout=0.2):
                    return self
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"mosquitto did not listen on {self.port}: {self.logs()[-2000:]}") from None
                time.sleep(0.02)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the broker (SIGTERM, so it saves persistence; SIGKILL when it lingers). Idempotent."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        _RUNNING.discard(proc)
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout)

    def kill(self) -> None:
        """SIGKILL: a broker crash (nothing saved)."""
        proc, self.proc = self.proc, None
        if proc is not None:
            _RUNNING.discard(proc)
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(5)

    def restart(self) -> Broker:
        self.stop()
        return self.start()

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def logs(self) -> str:
        parts = []
        for p in (self.log_path, self.dir / "stderr.log"):
            with contextlib.suppress(OSError):
                parts.append(p.read_text(encoding="utf-8", errors="replace"))
        return "\n".join(parts)

    def __enter__(self) -> Broker:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # ------------------------------------------------------------------ certificates

    def client_cert(self, name: str) -> tuple[Path, Path]:
        """(certificate, private key) of a client whose certificate CN is ``name``, signed by the test CA."""
        if not self.tls:
            raise RuntimeError("this broker has no TLS")
        return self._issue(name, server=False)

    def _make_ca(self) -> None:
        from cryptography import x509
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID

        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kiosk test CA")])
        now = datetime.datetime.now(datetime.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=365))  # the image script refuses a CA about to expire
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, _sha256())
        )
        self._ca_key = key
        self._ca_cert = cert
        self.ca_file.write_bytes(_pem_cert(cert))

    def _issue(self, cn: str, *, server: bool) -> tuple[Path, Path]:
        import ipaddress

        from cryptography import x509
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
            .issuer_name(self._ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self._ca_key.public_key()), critical=False
            )
        )
        if server:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(cn)), x509.DNSName("localhost")]),
                critical=False,
            ).add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        else:
            builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        cert = builder.sign(self._ca_key, _sha256())
        stem = "server" if server else f"client-{cn}"
        cert_path, key_path = self.dir / f"{stem}.pem", self.dir / f"{stem}.key"
        cert_path.write_bytes(_pem_cert(cert))
        fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(_pem_key(key))
        return cert_path, key_path


def _sha256() -> Any:
    from cryptography.hazmat.primitives import hashes

    return hashes.SHA256()


def _pem_cert(cert: Any) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return bytes(cert.public_bytes(serialization.Encoding.PEM))


def _pem_key(key: Any) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
