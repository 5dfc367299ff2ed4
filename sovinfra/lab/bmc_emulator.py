"""A lab BMC: OpenStack's sushy-tools Redfish emulator in front of libvirt VMs, behind TLS and a password
like a real BMC (its own CA, so clients check the certificate; an htpasswd of bcrypt hashes)."""

from __future__ import annotations

import datetime
import ipaddress
import sys
from dataclasses import dataclass
from pathlib import Path

from sovinfra import atomic
from sovinfra.lab import processes

MARK = "sushy_tools.emulator.main"  # in the emulator's command line: how its pid is recognised


@dataclass(frozen=True)
class Emulator:
    pid: int
    url: str
    ca_file: Path


def _write_tls(directory: Path, address: str) -> tuple[Path, Path, Path]:
    """A CA, and a certificate for `address` it signed; the CA's key is thrown away."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sovinfra lab BMC CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, address)]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(address))]), False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    ca_file, cert_file, key_file = directory / "ca.pem", directory / "bmc.pem", directory / "bmc.key"
    atomic.write_bytes(ca_file, ca.public_bytes(pem))
    atomic.write_bytes(cert_file, cert.public_bytes(pem))
    atomic.write_bytes(
        key_file,
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()),
        mode=0o600,
    )
    return ca_file, cert_file, key_file


def config(
    address: str, port: int, cert: Path, key: Path, auth_file: Path, libvirt_uri: str, instances: list[str]
) -> str:
    """The emulator's configuration (a Python file it executes): only these VMs, only this address."""
    return (
        f"SUSHY_EMULATOR_LISTEN_IP = {address!r}\n"
        f"SUSHY_EMULATOR_LISTEN_PORT = {port!r}\n"
        f"SUSHY_EMULATOR_SSL_CERT = {str(cert)!r}\n"
        f"SUSHY_EMULATOR_SSL_KEY = {str(key)!r}\n"
        f"SUSHY_EMULATOR_AUTH_FILE = {str(auth_file)!r}\n"
        f"SUSHY_EMULATOR_LIBVIRT_URI = {libvirt_uri!r}\n"
        f"SUSHY_EMULATOR_ALLOWED_INSTANCES = {instances!r}\n"
        "SUSHY_EMULATOR_IGNORE_BOOT_DEVICE = False\n"
    )


def start(
    directory: Path,
    address: str,
    port: int,
    user: str,
    password: str,
    instances: list[str],
    libvirt_uri: str = "qemu:///system",
) -> Emulator:
    """Start an emulator for the libvirt domains `instances` (names or UUIDs); its files in `directory`."""
    import bcrypt

    directory.mkdir(parents=True, exist_ok=True)
    ca_file, cert, key = _write_tls(directory, address)
    hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt()).decode()
    auth_file = directory / "htpasswd"
    atomic.write_text(auth_file, f"{user}:{hashed}\n", mode=0o600)
    conf = directory / "emulator.conf"
    atomic.write_text(conf, config(address, port, cert, key, auth_file, libvirt_uri, instances), mode=0o600)
    pid = processes.start_daemon(
        [sys.executable, "-m", MARK, "--config", str(conf)],
        directory / "emulator.log",
        address,
        port,
        "the BMC emulator (sushy-tools)",
        timeout=60,
    )
    return Emulator(pid=pid, url=f"https://{address}:{port}", ca_file=ca_file)


def stop(pid: int) -> None:
    processes.stop(pid, MARK)
