"""A certificate authority, a broker certificate and a client certificate, made for one
test session.

The session broker's TLS listeners need a certificate their clients can verify: signed
by a CA of our own, for the address they dial (127.0.0.1, as an IP SAN, so host name
verification stays on). Its SSL listener also wants a client certificate from that CA
(mutual TLS). Keys are unencrypted PEM, readable by the owner only; the files live in
the broker's work directory and go with it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import ipaddress
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["LoopbackTls", "make_loopback_certificates"]


@dataclasses.dataclass(frozen=True)
class LoopbackTls:
    """The files: the CA's certificate (for everyone), the broker's PEM keystore (its key
    and certificate chain in one file), and a client's certificate and key."""

    ca: Path
    broker_keystore: Path
    client_cert: Path
    client_key: Path


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _write_private(path: Path, data: bytes) -> None:
    path.touch(mode=0o600)
    path.write_bytes(data)


def make_loopback_certificates(directory: Path) -> LoopbackTls:
    """Make the CA and the two certificates it signs; write them under ``directory``."""
    now = dt.datetime.now(dt.UTC)
    begins, ends = now - dt.timedelta(minutes=5), now + dt.timedelta(days=2)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder(not_valid_before=begins, not_valid_after=ends)
        .subject_name(_name("vmpulse test CA"))
        .issuer_name(_name("vmpulse test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )

    def signed(
        common: str, usage: x509.ObjectIdentifier, *sans: x509.GeneralName
    ) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (
            x509.CertificateBuilder(not_valid_before=begins, not_valid_after=ends)
            .subject_name(_name(common))
            .issuer_name(ca.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        )
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        return key, builder.sign(ca_key, hashes.SHA256())

    broker_key, broker = signed(
        "127.0.0.1",
        ExtendedKeyUsageOID.SERVER_AUTH,
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        x509.DNSName("localhost"),
    )
    client_key, client = signed("vmpulse-test-client", ExtendedKeyUsageOID.CLIENT_AUTH)

    pem = serialization.Encoding.PEM
    directory.mkdir(parents=True, exist_ok=True)
    files = LoopbackTls(
        ca=directory / "ca.pem",
        broker_keystore=directory / "broker.pem",
        client_cert=directory / "client.pem",
        client_key=directory / "client.key",
    )
    files.ca.write_bytes(ca.public_bytes(pem))
    _write_private(
        files.broker_keystore,
        _key_pem(broker_key) + broker.public_bytes(pem) + ca.public_bytes(pem),
    )
    files.client_cert.write_bytes(client.public_bytes(pem) + ca.public_bytes(pem))
    _write_private(files.client_key, _key_pem(client_key))
    return files
