"""Throwaway TLS certificates for tests: a CA, a server and a client certificate.

:func:`make_tls_files` runs the ``openssl`` command; :class:`TLSFiles` names
the PEM files it writes and turns them into ``redis.Redis`` arguments.
"""

from __future__ import annotations

import ipaddress
import secrets
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class TLSFiles:
    """The PEM files of a throwaway certificate authority, made by :func:`make_tls_files`.

    ``server_cert`` and ``client_cert`` are both signed by ``ca_cert``; no
    key is encrypted. Use ``ca_cert`` as ``ssl_ca_certs`` on the client side,
    and ``client_cert``/``client_key`` as ``ssl_certfile``/``ssl_keyfile``.
    """

    directory: Path
    ca_cert: Path
    ca_key: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path

    def client_kwargs(self, *, client_cert: bool = True) -> dict[str, Any]:
        """``redis.Redis`` keyword arguments for TLS with these files (and the client cert)."""
        kwargs: dict[str, Any] = {"ssl": True, "ssl_ca_certs": str(self.ca_cert)}
        if client_cert:
            kwargs.update(ssl_certfile=str(self.client_cert), ssl_keyfile=str(self.client_key))
        return kwargs


_OPENSSL_CONFIG = """\
[req]
distinguished_name = dn
prompt = no
[dn]
CN = raftredis
[ca_ext]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[server_ext]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth, clientAuth
subjectAltName = {san}
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[client_ext]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
"""


def make_tls_files(
    directory: str | Path,
    *,
    server_names: Sequence[str] = ("localhost", "127.0.0.1"),
    days: int = 7,
) -> TLSFiles:
    """Create a CA, a server certificate and a client certificate in ``directory``.

    For tests only: EC P-256 keys, unencrypted, valid for ``days`` days. The
    server certificate names ``server_names`` (DNS names or IP addresses) in
    its subjectAltName. Uses the ``openssl`` command.

    Raises:
        RuntimeError: ``openssl`` is missing or failed (with its output).
    """
    openssl = shutil.which("openssl")
    if openssl is None:
        raise RuntimeError(
            "the openssl command is needed to make test certificates: "
            "install it (e.g. `apt-get install openssl`)"
        )
    if not server_names:
        raise ValueError("server_names must name at least one host")
    path = Path(directory)
    path.mkdir(parents=True, exist_ok=True)
    san = ", ".join(
        f"IP:{name}" if _is_ip_address(name) else f"DNS:{name}" for name in server_names
    )
    config = path / "openssl.cnf"
    config.write_text(_OPENSSL_CONFIG.format(san=san))
    files = tls_files_in(path)
    new_key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]

    def run(*args: str) -> None:
        result = subprocess.run(
            [openssl, *args], capture_output=True, text=True, timeout=30, check=False
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"openssl {' '.join(args[:2])} failed with status {result.returncode}: "
                f"{(result.stderr or result.stdout).strip()}"
            )

    run(
        "req", "-x509", "-new", *new_key, "-config", str(config), "-extensions", "ca_ext",
        "-subj", "/CN=raftredis test CA", "-days", str(days),
        "-keyout", str(files.ca_key), "-out", str(files.ca_cert),
    )  # fmt: skip
    for cert, key, subject, extensions in (
        (files.server_cert, files.server_key, f"/CN={server_names[0]}", "server_ext"),
        (files.client_cert, files.client_key, "/CN=raftredis test client", "client_ext"),
    ):
        request = cert.with_suffix(".csr")
        run(
            "req", "-new", *new_key, "-config", str(config), "-subj", subject,
            "-keyout", str(key), "-out", str(request),
        )  # fmt: skip
        run(
            "x509", "-req", "-in", str(request), "-CA", str(files.ca_cert),
            "-CAkey", str(files.ca_key), "-set_serial", str(secrets.randbits(63)),
            "-days", str(days), "-extfile", str(config), "-extensions", extensions,
            "-out", str(cert),
        )  # fmt: skip
        request.unlink()
    return files


def tls_files_in(directory: Path) -> TLSFiles:
    """The files that :func:`make_tls_files` writes in ``directory`` (they may not exist yet)."""
    return TLSFiles(
        directory=directory,
        ca_cert=directory / "ca.crt",
        ca_key=directory / "ca.key",
        server_cert=directory / "server.crt",
        server_key=directory / "server.key",
        client_cert=directory / "client.crt",
        client_key=directory / "client.key",
    )


def _is_ip_address(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True
