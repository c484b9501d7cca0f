"""The Kafka clients' security settings: what is refused at start, and what each client
library is given (infra/config.py, infra/kafka_auth.py). The clients themselves meet a
broker's SASL listener in tests/integration/infra/test_kafka_auth.py."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from infra.config import ConfigError, KafkaAuth, Secret, Settings
from infra.kafka_auth import PLAINTEXT, aiokafka_auth, faust_credentials, rdkafka_auth

CLUSTER = {"VMPULSE_KAFKA_BOOTSTRAP": "kafka.example:9093"}
USER = {"VMPULSE_KAFKA_SASL_USERNAME": "vmpulse", "VMPULSE_KAFKA_SASL_PASSWORD": "s3cret-pw"}


def _errors(env: dict[str, str]) -> str:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env(env)
    return str(caught.value)


def test_plaintext_is_the_default_and_gives_every_library_nothing_but_that() -> None:
    assert Settings.from_env(CLUSTER).kafka.auth == PLAINTEXT
    assert rdkafka_auth(PLAINTEXT) == {"security.protocol": "plaintext"}
    assert aiokafka_auth(PLAINTEXT) == {"security_protocol": "PLAINTEXT"}
    assert faust_credentials(PLAINTEXT) is None


def test_a_sasl_user_over_tls_reaches_each_library(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("not a certificate\n")  # a file; what is in it is read by the clients only
    env = {
        **CLUSTER,
        **USER,
        "VMPULSE_KAFKA_SECURITY_PROTOCOL": "sasl_ssl",  # Kafka's names, any case
        "VMPULSE_KAFKA_SASL_MECHANISM": "scram-sha-256",
        "VMPULSE_KAFKA_SSL_CAFILE": str(ca),
    }
    auth = Settings.from_env(env).kafka.auth
    assert auth == KafkaAuth("SASL_SSL", "SCRAM-SHA-256", "vmpulse", Secret("s3cret-pw"), ca)
    assert "s3cret" not in repr(auth)
    assert rdkafka_auth(auth) == {
        "security.protocol": "sasl_ssl",
        "sasl.mechanism": "SCRAM-SHA-256",
        "sasl.username": "vmpulse",
        "sasl.password": "s3cret-pw",
        "ssl.ca.location": str(ca),
    }
    # aiokafka's TLS context is built from the CA file: one with no certificate is refused by
    # the ssl module, as a client would be refused by a broker it cannot verify
    with pytest.raises(ssl.SSLError):
        aiokafka_auth(auth)


def test_tls_without_a_ca_file_verifies_brokers_against_the_system_cas() -> None:
    auth = Settings.from_env({**CLUSTER, "VMPULSE_KAFKA_SECURITY_PROTOCOL": "SSL"}).kafka.auth
    kwargs = aiokafka_auth(auth)
    assert kwargs["security_protocol"] == "SSL" and "sasl_mechanism" not in kwargs
    context = kwargs["ssl_context"]
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert rdkafka_auth(auth) == {"security.protocol": "ssl"}
    assert faust_credentials(auth).protocol.value == "SSL"


def test_a_client_certificate_reaches_each_library(tmp_path: Path) -> None:
    from tests.support.tls import make_loopback_certificates

    tls = make_loopback_certificates(tmp_path)
    env = {
        **CLUSTER,
        "VMPULSE_KAFKA_SECURITY_PROTOCOL": "SSL",
        "VMPULSE_KAFKA_SSL_CAFILE": str(tls.ca),
        "VMPULSE_KAFKA_SSL_CERTFILE": str(tls.client_cert),
        "VMPULSE_KAFKA_SSL_KEYFILE": str(tls.client_key),
    }
    auth = Settings.from_env(env).kafka.auth
    assert (auth.certfile, auth.keyfile) == (tls.client_cert, tls.client_key)
    assert rdkafka_auth(auth) == {
        "security.protocol": "ssl",
        "ssl.ca.location": str(tls.ca),
        "ssl.certificate.location": str(tls.client_cert),
        "ssl.key.location": str(tls.client_key),
    }
    context = aiokafka_auth(auth)["ssl_context"]
    assert context.verify_mode == ssl.CERT_REQUIRED  # the key and certificate loaded with it
    assert faust_credentials(auth).context.verify_mode == ssl.CERT_REQUIRED


def test_sasl_plaintext_gives_faust_a_sasl_user() -> None:
    env = {**CLUSTER, **USER, "VMPULSE_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT"}
    auth = Settings.from_env(env).kafka.auth
    credentials = faust_credentials(auth)
    assert (credentials.protocol.value, credentials.mechanism.value) == (
        "SASL_PLAINTEXT",
        "SCRAM-SHA-512",  # the default mechanism
    )
    assert (credentials.username, credentials.password) == ("vmpulse", "s3cret-pw")
    assert aiokafka_auth(auth) == {
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "vmpulse",
        "sasl_plain_password": "s3cret-pw",
    }


def test_the_password_may_come_from_a_mounted_file(tmp_path: Path) -> None:
    secret = tmp_path / "kafka_password"
    secret.write_text("from-a-file\n")
    env = {
        **CLUSTER,
        "VMPULSE_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "VMPULSE_KAFKA_SASL_USERNAME": "vmpulse",
        "VMPULSE_KAFKA_SASL_PASSWORD_FILE": str(secret),
    }
    assert Settings.from_env(env).kafka.auth.password == Secret("from-a-file")


@pytest.mark.parametrize(
    ("env", "said"),
    [
        ({**CLUSTER, "VMPULSE_KAFKA_SECURITY_PROTOCOL": "TLS"}, "must be one of PLAINTEXT"),
        (
            {**CLUSTER, **USER, "VMPULSE_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
             "VMPULSE_KAFKA_SASL_MECHANISM": "GSSAPI"},
            "VMPULSE_KAFKA_SASL_MECHANISM must be one of PLAIN",
        ),
        (
            {**CLUSTER, "VMPULSE_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
             "VMPULSE_KAFKA_SASL_USERNAME": "vmpulse"},
            "needs VMPULSE_KAFKA_SASL_USERNAME and VMPULSE_KAFKA_SASL_PASSWORD",
        ),
        ({**CLUSTER, **USER}, "are set but VMPULSE_KAFKA_SECURITY_PROTOCOL is PLAINTEXT"),
        (
            {**CLUSTER, "VMPULSE_KAFKA_SSL_CAFILE": __file__},
            "VMPULSE_KAFKA_SSL_CAFILE is set but VMPULSE_KAFKA_SECURITY_PROTOCOL is PLAINTEXT",
        ),
        (
            {**CLUSTER, "VMPULSE_KAFKA_SECURITY_PROTOCOL": "SSL",
             "VMPULSE_KAFKA_SSL_CAFILE": "/nowhere/ca.pem"},
            "VMPULSE_KAFKA_SSL_CAFILE must name a PEM file",
        ),
        (
            {**CLUSTER, "VMPULSE_KAFKA_SECURITY_PROTOCOL": "SSL",
             "VMPULSE_KAFKA_SSL_CERTFILE": __file__},
            "VMPULSE_KAFKA_SSL_CERTFILE and VMPULSE_KAFKA_SSL_KEYFILE go together",
        ),
        (
            {**CLUSTER, "VMPULSE_KAFKA_SSL_KEYFILE": __file__,
             "VMPULSE_KAFKA_SSL_CERTFILE": __file__},
            "VMPULSE_KAFKA_SSL_KEYFILE is set but VMPULSE_KAFKA_SECURITY_PROTOCOL is PLAINTEXT",
        ),
        (
            {**USER, "VMPULSE_KAFKA_SECURITY_PROTOCOL": "SASL_SSL"},
            "needs VMPULSE_KAFKA_BOOTSTRAP (the local broker of `up` speaks PLAINTEXT)",
        ),
    ],
)  # fmt: skip
def test_settings_that_cannot_connect_are_refused_at_start_without_the_password(
    env: dict[str, str], said: str
) -> None:
    message = _errors(env)
    assert said in message
    assert "s3cret" not in message
