"""One :class:`~infra.config.KafkaAuth` in the words of each Kafka client library.

vmpulse talks to Kafka through three libraries: librdkafka (confluent-kafka: the
bridge's producer, the worker's and the readers' consumers), aiokafka (admin, the
gateway's and the tools' consumers, small producers) and Faust (the worker's app,
on aiokafka). Each names the same things differently; these functions are the only
place that knows how, so a process configured once (VMPULSE_KAFKA_SECURITY_PROTOCOL
and the rest, infra/config.py) connects the same way from every client it makes.

The password leaves its :class:`~infra.config.Secret` only here, into the client's
own configuration, never into a log line or an error message of ours.
"""

from __future__ import annotations

import ssl
from typing import Any

from infra.config import KafkaAuth

__all__ = ["PLAINTEXT", "aiokafka_auth", "faust_credentials", "rdkafka_auth", "ssl_context"]

PLAINTEXT = KafkaAuth()
"""Kafka's default, and every client's unless a process is configured otherwise."""


def rdkafka_auth(auth: KafkaAuth) -> dict[str, str]:
    """librdkafka's properties for ``auth`` (merged into a client's configuration)."""
    conf = {"security.protocol": auth.protocol.lower()}
    if auth.sasl:
        assert auth.username is not None and auth.password is not None  # checked in config
        conf["sasl.mechanism"] = auth.mechanism
        conf["sasl.username"] = auth.username
        conf["sasl.password"] = auth.password.reveal()
    if auth.tls and auth.cafile is not None:
        conf["ssl.ca.location"] = str(auth.cafile)
    if auth.tls and auth.certfile is not None and auth.keyfile is not None:
        conf["ssl.certificate.location"] = str(auth.certfile)
        conf["ssl.key.location"] = str(auth.keyfile)
    return conf


def ssl_context(auth: KafkaAuth) -> ssl.SSLContext | None:
    """The TLS context of the aiokafka and Faust clients: the brokers' certificates
    checked against ``auth.cafile`` (or the system's CAs) and their host names verified;
    the client's own certificate shown to brokers that ask for one (mutual TLS)."""
    if not auth.tls:
        return None
    context = ssl.create_default_context(cafile=None if auth.cafile is None else str(auth.cafile))
    if auth.certfile is not None and auth.keyfile is not None:
        context.load_cert_chain(str(auth.certfile), str(auth.keyfile))
    return context


def aiokafka_auth(auth: KafkaAuth) -> dict[str, Any]:
    """aiokafka's keyword arguments for ``auth`` (producer, consumer and admin alike)."""
    kwargs: dict[str, Any] = {"security_protocol": auth.protocol}
    if auth.sasl:
        assert auth.username is not None and auth.password is not None  # checked in config
        kwargs["sasl_mechanism"] = auth.mechanism
        kwargs["sasl_plain_username"] = auth.username
        kwargs["sasl_plain_password"] = auth.password.reveal()
    if auth.tls:
        kwargs["ssl_context"] = ssl_context(auth)
    return kwargs


def faust_credentials(auth: KafkaAuth) -> Any:
    """Faust's ``broker_credentials`` for ``auth``; None for PLAINTEXT (Faust's default)."""
    import faust

    if auth.sasl:
        assert auth.username is not None and auth.password is not None  # checked in config
        return faust.SASLCredentials(
            username=auth.username,
            password=auth.password.reveal(),
            mechanism=auth.mechanism,
            ssl_context=ssl_context(auth),
        )
    if auth.tls:
        return faust.SSLCredentials(ssl_context(auth))
    return None
