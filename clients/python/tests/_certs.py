"""Throwaway test PKI made with the ``openssl`` command: a CA, a server certificate for
``localhost`` (as the domain CA issues it) and a client certificate. Not a test itself."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path


def available() -> bool:
    return shutil.which("openssl") is not None


def _run(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_pki(directory: Path) -> dict[str, Path]:
    """Writes ca.pem/ca.key, server.pem/server.key and a client credentials directory
    ``client/`` (ca.pem, cert.pem, key.pem) into ``directory``."""
    d = Path(directory)
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    _run(
        "req",
        "-x509",
        *ec,
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=shuyu test CA",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
        cwd=d,
    )
    for name, cn, ext in (
        ("server", "localhost", "subjectAltName=DNS:localhost\nextendedKeyUsage=serverAuth\n"),
        ("client", "pr_test", "extendedKeyUsage=clientAuth\n"),
    ):
        (d / f"{name}.ext").write_text("basicConstraints=CA:FALSE\n" + ext)
        _run(
            "req", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={cn}", cwd=d
        )
        _run(
            "x509",
            "-req",
            "-in",
            f"{name}.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            f"{name}.pem",
            "-days",
            "2",
            "-extfile",
            f"{name}.ext",
            cwd=d,
        )
    creds = d / "client"
    creds.mkdir(exist_ok=True)
    shutil.copy(d / "ca.pem", creds / "ca.pem")
    shutil.copy(d / "client.pem", creds / "cert.pem")
    shutil.copy(d / "client.key", creds / "key.pem")
    return {
        "ca": d / "ca.pem",
        "server_cert": d / "server.pem",
        "server_key": d / "server.key",
        "client_dir": creds,
    }
