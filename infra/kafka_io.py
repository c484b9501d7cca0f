"""Kafka plumbing shared by the stages: topic creation, producers, the directory tail.

Kept apart from the stages so that the bridge, the worker and the gateway talk
to the broker the same way (idempotent, acks from all in-sync replicas,
compressed batches) and so that tests can use the same helpers.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import ssl
from collections.abc import Callable, Sequence

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.conn import create_conn
from aiokafka.errors import (
    AuthenticationFailedError,
    CoordinatorLoadInProgressError,
    GroupCoordinatorNotAvailableError,
    IllegalSaslStateError,
    KafkaConnectionError,
    KafkaError,
    KafkaTimeoutError,
    SaslAuthenticationFailed,
    TopicAlreadyExistsError,
    UnsupportedSaslMechanismError,
)

from infra.config import KafkaAuth, Settings
from infra.kafka_auth import PLAINTEXT, aiokafka_auth
from infra.startup import StartError
from infra.tasks import cancel_and_wait
from schemas.directory import Directory, DirectoryError
from schemas.topics import MAX_BATCH_BYTES, Topics

__all__ = [
    "DirectoryTail",
    "Durability",
    "KafkaRefused",
    "KafkaUnavailable",
    "cluster_durability",
    "durability",
    "ensure_settings_topics",
    "ensure_topics",
    "make_producer",
    "topic_configs",
    "wait_for_broker",
    "wait_for_group_coordinator",
    "wait_for_leaders",
]

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True, slots=True)
class Durability:
    """How many copies of each partition, and how many must have a write before it is acked."""

    replication_factor: int
    min_insync_replicas: int


def durability(brokers: int, requested: int | None = None) -> Durability:
    """The one rule for vmpulse's topics (issue 14): 3 replicas, 2 in sync, where there are 3.

    On a cluster of 3 brokers or more a partition has 3 replicas and a write
    (acks=all: every producer here asks for it) is acknowledged once 2 hold it:
    one broker may die, or be restarted for an upgrade, without a write lost or
    refused. On fewer brokers, one replica per broker and 1 in sync (a single
    broker has no one to wait for). ``requested`` (VMPULSE_REPLICATION_FACTOR)
    overrides the replica count; 2 must be in sync whenever there are 3 or more.
    """
    if brokers < 1:
        raise ValueError(f"a cluster has at least one broker, got {brokers}")
    replicas = requested if requested is not None else min(brokers, 3)
    return Durability(replicas, 2 if replicas >= 3 else 1)


async def cluster_durability(admin: AIOKafkaAdminClient, requested: int | None) -> Durability:
    """:func:`durability` for the brokers the cluster has now."""
    brokers = len((await admin.describe_cluster())["brokers"])
    return durability(brokers, requested)


def topic_configs(topics: Topics, plan: Durability) -> dict[str, dict[str, str]]:
    """The configs each vmpulse topic is created with (:func:`ensure_topics`): the
    in-sync rule of ``plan``, the largest record batch (:data:`MAX_BATCH_BYTES`,
    whatever the cluster's default), and compaction for the keyed state (directory,
    worker.state). Everything else is the cluster's default (retention included);
    docs/DEPLOYMENT.md shows this table."""
    out: dict[str, dict[str, str]] = {}
    for name in topics.all():
        configs = {
            "min.insync.replicas": str(plan.min_insync_replicas),
            "max.message.bytes": str(MAX_BATCH_BYTES),
        }
        if name in topics.compacted():
            configs["cleanup.policy"] = "compact"
        out[name] = configs
    return out


async def ensure_topics(
    bootstrap: str,
    topics: Topics,
    *,
    partitions: int,
    replication_factor: int | None = None,
    auth: KafkaAuth = PLAINTEXT,
) -> Durability:
    """Create every vmpulse topic that does not exist yet; the compacted ones compacted.

    Replicas and ``min.insync.replicas`` follow :func:`durability` for the
    cluster's size unless ``replication_factor`` is given; returns what they are.
    """
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **aiokafka_auth(auth))
    await admin.start()
    try:
        plan = await cluster_durability(admin, replication_factor)
        existing = set(await admin.list_topics())
        wanted = [
            NewTopic(name, partitions, plan.replication_factor, topic_configs=configs)
            for name, configs in topic_configs(topics, plan).items()
            if name not in existing
        ]
        if wanted:
            try:
                await admin.create_topics(wanted)
            except TopicAlreadyExistsError:
                pass  # another stage created them between our list and our create
        await _wait_for_metadata(admin, topics.all())
    finally:
        await admin.close()
    return plan


async def wait_for_leaders(
    bootstrap: str,
    topics: Sequence[str],
    partitions: int | None,
    *,
    timeout_s: float = 30.0,
    auth: KafkaAuth = PLAINTEXT,
) -> bool:
    """Wait until the leaders of the topics' partitions answer (a ListOffsets each).

    ``partitions``: how many each topic has; ``None``: as many as the cluster says (a
    stage that did not create the topics must not wait for partitions that a
    different ``VMPULSE_PARTITIONS`` made it expect).

    KRaft announces a leader in the metadata a moment before that broker
    serves the partition; a producer that starts at once is refused with
    NotLeaderForPartition and retries, with a warning per partition. Harmless,
    but on a first `vmpulse up` it reads like a fault. About 0.7 s after the
    topics were created, one round trip once they are served.

    Only a courtesy, so never fatal: past ``timeout_s`` (a loaded broker once took
    longer to name the leader of one partition, and the worker exited with it) this
    logs a warning and returns False; the clients that start next retry on their own.
    """
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        request_timeout_ms=int(timeout_s * 1000),
        **aiokafka_auth(auth),
    )
    if partitions is None:
        wanted = await _partitions_of(bootstrap, topics, auth)
    else:
        wanted = [TopicPartition(t, p) for t in topics for p in range(partitions)]
    await consumer.start()
    try:
        await consumer.end_offsets(wanted)
    except KafkaTimeoutError:
        log.warning(
            "some partitions of %d topics had no serving leader within %.0f s; "
            "starting anyway (the clients retry)",
            len(topics),
            timeout_s,
        )
        return False
    finally:
        await consumer.stop()
    return True


async def _partitions_of(
    bootstrap: str, topics: Sequence[str], auth: KafkaAuth
) -> list[TopicPartition]:
    """Every partition the cluster has of ``topics`` (a missing topic has none)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **aiokafka_auth(auth))
    await admin.start()
    try:
        described = await admin.describe_topics(list(topics))
    finally:
        await admin.close()
    return [
        TopicPartition(d["topic"], p["partition"])
        for d in described
        if d["error_code"] == 0
        for p in d["partitions"]
    ]


async def wait_for_group_coordinator(
    bootstrap: str, group: str, timeout_s: float = 30.0, *, auth: KafkaAuth = PLAINTEXT
) -> None:
    """Wait until the broker names a coordinator for ``group``.

    A fresh broker creates its offsets topic on the first request for a
    coordinator; a consumer joining meanwhile logs GroupCoordinatorNotAvailable
    as an error, which on a first `vmpulse up` looks like a fault.
    """
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **aiokafka_auth(auth))
    await admin.start()
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while True:
            try:
                await admin.find_coordinator(group)
                return
            except (GroupCoordinatorNotAvailableError, CoordinatorLoadInProgressError):
                if loop.time() > deadline:
                    raise
                await asyncio.sleep(0.1)
    finally:
        await admin.close()


async def _wait_for_metadata(admin: AIOKafkaAdminClient, names: tuple[str, ...]) -> None:
    """Topic creation is asynchronous in KRaft: wait until every partition has a leader.

    Producing before that works too, but each send is answered with
    NotLeaderForPartition and retried, which fills the log with warnings.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    while True:
        described = await admin.describe_topics(list(names))
        if all(
            t.get("error_code", 0) == 0
            and t.get("partitions")
            and all(p.get("leader", -1) >= 0 for p in t["partitions"])
            for t in described
        ):
            return
        if loop.time() > deadline:
            raise TimeoutError(f"topics not ready: {names}")
        await asyncio.sleep(0.1)


class KafkaRefused(StartError, KafkaError):  # type: ignore[misc]
    """The cluster answers but refuses this client: its user, its mechanism or its TLS."""


class KafkaUnavailable(StartError, KafkaConnectionError):  # type: ignore[misc]
    """No broker answered within the time a stage waits for one (VMPULSE_KAFKA_WAIT_S)."""


async def _refusal(bootstrap: str, auth: KafkaAuth) -> BaseException | None:
    """Why the first bootstrap server refuses us, if it answers and does.

    aiokafka logs a refused SASL user or TLS handshake and then reports only that it
    could not bootstrap, as it does for a broker that is not up yet; one direct
    connection tells the two apart.
    """
    host, _, port = bootstrap.split(",")[0].strip().rpartition(":")
    try:
        conn = await create_conn(host.strip("[]"), int(port), **aiokafka_auth(auth))
    except (
        AuthenticationFailedError,
        SaslAuthenticationFailed,
        UnsupportedSaslMechanismError,
        IllegalSaslStateError,
        ssl.SSLError,
    ) as exc:
        return exc
    except (TimeoutError, OSError, KafkaError, ValueError) as exc:
        # TLS 1.3 alerts a missing or unknown client certificate after the handshake:
        # the connection then reads as closed, with the alert as its cause
        if isinstance(exc.__cause__, ssl.SSLError):
            return exc.__cause__
        return None  # not up, or not answering: waited for as before
    conn.close()
    return None


async def wait_for_broker(bootstrap: str, timeout_s: float, *, auth: KafkaAuth = PLAINTEXT) -> None:
    """Wait up to ``timeout_s`` until the cluster answers at ``bootstrap``.

    Containers start in any order: a stage that starts before its broker waits for
    it (saying so once) instead of dying and depending on a restart policy.
    :class:`KafkaUnavailable` once the time is up. A cluster that answers but refuses
    the client's user or TLS raises :class:`KafkaRefused` at once: waiting would not
    change a password.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    said = False
    while True:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **aiokafka_auth(auth))
        try:
            await admin.start()
            return
        except KafkaConnectionError as exc:
            refusal = None if auth == PLAINTEXT else await _refusal(bootstrap, auth)
            if refusal is not None:
                raise KafkaRefused(f"Kafka at {bootstrap} refuses this client: {refusal}") from None
            if loop.time() >= deadline:
                raise KafkaUnavailable(
                    f"Kafka at {bootstrap} did not answer within {timeout_s:.0f} s "
                    "(VMPULSE_KAFKA_BOOTSTRAP; VMPULSE_KAFKA_WAIT_S to wait longer)"
                ) from exc
            if not said:
                log.warning(
                    "Kafka at %s does not answer yet; waiting up to %.0f s", bootstrap, timeout_s
                )
                said = True
        finally:
            await admin.close()
        await asyncio.sleep(1.0)


async def ensure_settings_topics(settings: Settings) -> Topics:
    """Create the topics of ``settings`` (prefix, partitions, replication); returns their names.

    Waits ``settings.kafka.wait_s`` for the broker first (VMPULSE_KAFKA_WAIT_S).
    """
    assert settings.kafka.bootstrap is not None, "resolve the broker first"
    auth = settings.kafka.auth
    await wait_for_broker(settings.kafka.bootstrap, settings.kafka.wait_s, auth=auth)
    topics = Topics(settings.kafka.topic_prefix)
    await ensure_topics(
        settings.kafka.bootstrap,
        topics,
        partitions=settings.kafka.partitions,
        replication_factor=settings.kafka.replication_factor,
        auth=auth,
    )
    return topics


LIVE_FETCH_WAIT_MS = 100
"""``fetch.wait.max.ms`` of the librdkafka consumers on the live path (the worker's
agent.raw, the gateway's events.outbound): how long the broker holds a fetch that found
nothing.

It does not delay a record: the broker answers a waiting fetch the moment a record is
appended to any partition in it (fetch.min.bytes 1), and librdkafka puts every assigned
partition in each fetch. It was 10 ms while these consumers were aiokafka's, which left
out of its one fetch in flight the partitions whose records were still buffered, so a
record for such a partition waited for that fetch to time out (p50 483 ms from agent to
browser at the default 500). At 10 ms an idle consumer asked a hundred times a second:
at 5 VMs that was half of the broker's CPU (`vmpulse up` 66-70 % of a core in all, 39-45 %
at 100 ms; latency at 5 and 200 VMs unchanged within the spread, docs/BENCHMARKS.md,
session 9). Only after librdkafka stopped fetching a partition whose prefetch was full
(a burst of megabytes) may its next fetch wait this long once.
"""


def make_producer(
    bootstrap: str,
    *,
    linger_ms: int = 5,
    client_id: str = "vmpulse",
    compression_type: str = "lz4",
    auth: KafkaAuth = PLAINTEXT,
) -> AIOKafkaProducer:
    """An idempotent producer with acks from all in-sync replicas and compressed batches.

    aiokafka compresses lz4 at level 9 (LZ4 HC, ~70 MB/s here); the bridge,
    which compresses every line it carries, asks for zstd (~285 MB/s, better ratio).
    """
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        client_id=client_id,
        enable_idempotence=True,
        acks="all",
        compression_type=compression_type,
        linger_ms=linger_ms,
        max_batch_size=1024 * 1024,
        max_request_size=16 * 1024 * 1024,
        **aiokafka_auth(auth),
    )


class DirectoryTail:
    """Reads the compacted ``directory`` topic from the start and keeps a Directory current.

    Every instance reads all partitions without a consumer group: each process
    needs the whole directory, and a group would split it. ``on_change`` is
    called with the key after each record is applied, so the gateway can drop
    subscriptions a user no longer may hold.
    """

    def __init__(
        self,
        bootstrap: str,
        topics: Topics,
        directory: Directory | None = None,
        on_change: Callable[[str], None] | None = None,
        *,
        auth: KafkaAuth = PLAINTEXT,
    ) -> None:
        self.directory = directory if directory is not None else Directory()
        self._bootstrap = bootstrap
        self._auth = auth
        self._topic = topics.directory
        self._on_change = on_change
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None
        self.caught_up = asyncio.Event()

    async def start(self) -> None:
        # Without a group, a subscribed consumer is assigned every partition.
        self._consumer = AIOKafkaConsumer(
            self._topic,
            bootstrap_servers=self._bootstrap,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            group_id=None,
            **aiokafka_auth(self._auth),
        )
        await self._consumer.start()
        tps = sorted(self._consumer.assignment())
        await self._consumer.seek_to_beginning(*tps)
        end = await self._consumer.end_offsets(tps)
        self._task = asyncio.create_task(self._run(dict(end)), name="directory-tail")

    async def _run(self, end: dict[TopicPartition, int]) -> None:
        assert self._consumer is not None
        pending = {tp for tp, off in end.items() if off > 0}
        if not pending:
            self.caught_up.set()
        while True:
            batches = await self._consumer.getmany(timeout_ms=500)
            for tp, records in batches.items():
                for rec in records:
                    key = rec.key.decode(errors="replace") if rec.key else ""
                    try:
                        self.directory.apply(key, rec.value)
                    except DirectoryError as exc:
                        log.warning("skipping directory record at %s@%d: %s", tp, rec.offset, exc)
                        continue
                    if self._on_change is not None:
                        self._on_change(key)
            if pending:
                for tp in list(pending):
                    if await self._consumer.position(tp) >= end[tp]:
                        pending.discard(tp)
                if not pending:
                    self.caught_up.set()

    async def stop(self) -> None:
        """Stop reading; the consumer is closed even if the reading task had failed."""
        await cancel_and_wait(self._task, "the directory tail")
        if self._consumer is not None:
            await self._consumer.stop()
