"""The `vmpulse` command: one subcommand per stage, plus tools.

``main()`` is the only place that reads the environment (through
:meth:`Settings.from_env`); every subcommand gets the resulting settings.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from infra.config import ConfigError, Settings
from infra.descriptors import raise_descriptor_limit
from infra.startup import StartError
from vmpulse.up_info import read_up_info

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="vmpulse", description="Real-time VM telemetry and events")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True)

    up = sub.add_parser("up", help="run the whole pipeline in one process with a simulated fleet")
    up.add_argument("--vms", type=int, default=5, help="simulated VMs (default 5)")
    up.add_argument("--interval", type=float, default=1.0, help="seconds between samples per VM")

    sub.add_parser("worker", help="run the stream worker")
    sub.add_parser("bridge", help="run the ingest bridge")
    sub.add_parser("hypervisor", help="watch libvirt (VMPULSE_LIBVIRT_URI) for lifecycle events")
    sub.add_parser("gateway", help="run the Socket.IO gateway (no query endpoint on chDB)")
    probe = sub.add_parser(
        "probe",
        help="ask this container's stage on VMPULSE_HEALTH_ADDR whether it is ready "
        "(exit 0) or not (exit 1); the image's HEALTHCHECK",
    )
    probe.add_argument("--live", action="store_true", help="ask /healthz instead of /readyz")
    sub.add_parser(
        "reader-grants",
        help="print the SQL that creates VMPULSE_CLICKHOUSE_READ_URL's read-only user",
    )

    sim = sub.add_parser("simulate", help="simulated guest agents (unix sockets or TCP)")
    sim.add_argument("--vms", type=int, default=5)
    sim.add_argument("--interval", type=float, default=1.0)
    sim.add_argument("--dialect", type=int, choices=(1, 2), default=1)
    sim.add_argument("--transport", choices=("unix", "tcp"), default="unix")
    sim.add_argument("--bad-rate", type=float, default=0.0, help="share of invalid lines")
    sim.add_argument("--progress", type=float, default=2.0, help="seconds between rate lines")
    sim.add_argument(
        "--shard",
        type=_shard,
        default=(0, 1),
        metavar="I/N",
        help="serve every N-th of the --vms VMs, from the I-th (0-based): N processes share "
        "a fleet too big for one (over unix sockets a VM holds two file descriptors)",
    )
    sim.add_argument(
        "--seed-directory",
        action="store_true",
        help="first publish the demo directory as `vmpulse up` does (users admin, alice, bob, "
        "carol; the simulated VMs, owned in turn); needs VMPULSE_KAFKA_BOOTSTRAP",
    )

    tok = sub.add_parser("token", help="print a development JWT for the configured key")
    tok.add_argument("--user", required=True)
    tok.add_argument("--admin", action="store_true", help="informational; the directory decides")
    tok.add_argument("--ttl-hours", type=float, default=12.0)

    q = sub.add_parser("query", help="run read-only SQL against the metric store")
    q.add_argument("sql")
    q.add_argument("--json", action="store_true", help="print JSON instead of a table")

    dlq = sub.add_parser("dlq", help="show the latest rejected agent lines and counts by reason")
    dlq.add_argument("-n", "--latest", type=int, default=20, help="rejects to show (default 20)")
    dlq.add_argument(
        "--scan", type=int, default=100_000, help="records read per partition (default 100000)"
    )
    dlq.add_argument("--json", action="store_true", help="print JSON instead of text")
    from vmpulse.platform_cli import add_platform_commands

    add_platform_commands(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    from vmpulse.logs import configure_logging

    args = _parser().parse_args(argv)
    try:
        settings = Settings.from_env(os.environ)
    except ConfigError as exc:
        print(exc, file=sys.stderr)  # before any logging: the reason, plainly, and stop
        return 2
    configure_logging(settings.log_format, verbose=args.verbose)
    raise_descriptor_limit()  # a connection is a descriptor: agents, browsers (infra/descriptors)
    handler = _COMMANDS[args.command]
    # SIGTERM as Ctrl-C until a stage's own handlers take over (mode's, the simulator's):
    # a stop asked for while a stage starts (a local broker, the wait for Kafka) then
    # stops it there, its broker and store closed, instead of killing it mid-way
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        return handler(settings, args)
    except KeyboardInterrupt as exc:
        signum = exc.signum if isinstance(exc, _Interrupted) else signal.SIGINT
        logging.getLogger("vmpulse").info(
            "vmpulse %s stopped by %s", args.command, signal.Signals(signum).name
        )
        return 128 + signum
    finally:
        if previous is not None:  # main() called in-process (tests) leaves no handler behind
            signal.signal(signal.SIGTERM, previous)


class _Interrupted(KeyboardInterrupt):
    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _interrupt(signum: int, frame: object) -> None:
    raise _Interrupted(signum)


def _listen_key_refusal(settings: Settings) -> bool:
    """Print why the gateway may not listen where configured (before any broker starts)."""
    from gateway.auth import check_listen_key

    try:
        check_listen_key(settings)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return True
    return False


def _cmd_up(settings: Settings, args: argparse.Namespace) -> int:
    from vmpulse.up import run_up

    if args.vms < 0 or args.interval <= 0:
        print("--vms must be >= 0 and --interval > 0", file=sys.stderr)
        return 2
    if _listen_key_refusal(settings):
        return 2
    return _start_refusal("up", lambda: run_up(settings, vms=args.vms, interval_s=args.interval))


def _cmd_worker(settings: Settings, args: argparse.Namespace) -> int:
    from vmpulse.up import run_worker

    return _start_refusal("worker", lambda: run_worker(settings))


def _start_refusal(command: str, run: Callable[[], int]) -> int:
    """Run a command that opens the store and waits for Kafka before its worker runs.

    What stops it there (the embedded store open in another process, a broker that does
    not answer or refuses this client) ends it with status 1 and one line that says why,
    not a traceback (infra/startup.py); in the log's format, so a JSON log stays JSON.
    """
    from store.exceptions import StoreError

    try:
        return run()
    except (StoreError, StartError) as exc:
        logging.getLogger("vmpulse").error("vmpulse %s cannot start: %s", command, exc)
        return 1


def _run_services(settings: Settings, make: Any) -> int:
    """Run one stage's service in a mode worker (SIGTERM and SIGINT stop it gracefully),
    with the health port before it when VMPULSE_HEALTH_ADDR is set."""
    import mode

    from vmpulse.up import health_services, start_broker_if_needed

    settings, broker = start_broker_if_needed(settings)
    try:
        stage = make(settings)
        metrics = getattr(getattr(stage, "metrics", None), "registry", None)

        def ready() -> bool:
            return bool(getattr(stage, "ready", stage.started)) and not stage.should_stop

        services = [*health_services(settings, ready, metrics), stage]
        # logging stays as main() set it (vmpulse/logs.py): levels and VMPULSE_LOG_FORMAT
        worker = mode.Worker(*services, quiet=True, override_logging=False)
        code = 0
        try:
            worker.execute_from_commandline()
        except SystemExit as exc:
            # mode exits 1 when a service failed to start or crashed: say so to the
            # orchestrator, which restarts on failure (a clean stop is 0)
            code = exc.code if isinstance(exc.code, int) else 1
    finally:
        if broker is not None:
            broker.stop()
    return code


def _cmd_bridge(settings: Settings, args: argparse.Namespace) -> int:
    from agents.bridge import Bridge, check_settings

    try:
        check_settings(settings)
    except ConfigError as exc:
        print(f"vmpulse bridge: {exc}", file=sys.stderr)
        return 2
    from vmpulse.tuning import tune_gc, tune_malloc

    # A read per line from thousands of sockets: uvloop's transports cost less per read
    # than asyncio's (docs/BENCHMARKS.md, "The bridge's loop per line").
    _use_uvloop()
    tune_gc()  # a line allocates a dozen containers: keep the collector off the hot path
    tune_malloc()  # librdkafka's batch by batch zstd contexts: keep them off the page faults
    return _run_services(settings, lambda s: Bridge(s))


def _cmd_hypervisor(settings: Settings, args: argparse.Namespace) -> int:
    if not settings.libvirt_uri:
        print("vmpulse hypervisor needs VMPULSE_LIBVIRT_URI", file=sys.stderr)
        return 2
    from agents.hypervisor import HypervisorWatcher

    return _run_services(settings, lambda s: HypervisorWatcher(s))


def _cmd_gateway(settings: Settings, args: argparse.Namespace) -> int:
    from gateway.service import GatewayService
    from store.exceptions import ReadError
    from store.reader import Reader, ReadLimits
    from vmpulse.tuning import tune_gc

    if _listen_key_refusal(settings):
        return 2
    # The gateway alone is all sockets: uvloop's transports and timers cost less
    # per connection and per write than asyncio's, and thousands of long-lived
    # connection objects make the collector's default thresholds costly
    # (docs/BENCHMARKS.md).
    _use_uvloop()
    tune_gc()
    if settings.store.read_url.startswith("chdb:"):
        # the embedded store belongs to the worker's process: history and SQL answer 503
        return _run_services(settings, lambda s: GatewayService(s))
    reader = Reader(settings.store.read_url, ReadLimits.from_settings(settings))
    try:
        reader.open()
    except ReadError as exc:
        print(f"cannot read the metric store: {exc}", file=sys.stderr)
        return 2
    try:
        return _run_services(settings, lambda s: GatewayService(s, reader=reader))
    finally:
        reader.close()


def _cmd_probe(settings: Settings, args: argparse.Namespace) -> int:
    from vmpulse.health import probe

    if settings.health_host is None:
        print("vmpulse probe needs VMPULSE_HEALTH_ADDR (the image sets it)", file=sys.stderr)
        return 2
    ok, said = probe(
        settings.health_host, settings.health_port, "/healthz" if args.live else "/readyz"
    )
    print(said)
    return 0 if ok else 1


def _cmd_reader_grants(settings: Settings, args: argparse.Namespace) -> int:
    from store.reader import ReadLimits
    from store.reader_grants import render_reader_grants

    try:
        statements = render_reader_grants(
            settings.store.read_url, ReadLimits.from_settings(settings)
        )
    except ValueError as exc:
        print(f"VMPULSE_CLICKHOUSE_READ_URL: {exc}", file=sys.stderr)
        return 2
    print(";\n".join(statements) + ";")
    return 0


def _use_uvloop() -> None:
    try:
        import uvloop
    except ImportError:  # not on this platform: asyncio's own loop works too
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def _shard(text: str) -> tuple[int, int]:
    """``I/N`` with ``0 <= I < N``; anything else is a usage error that says so."""
    index, sep, count = text.partition("/")
    if not sep or not index.isdigit() or not count.isdigit() or not int(index) < int(count):
        raise argparse.ArgumentTypeError(f"must be I/N with 0 <= I < N, got {text!r}")
    return int(index), int(count)


def _cmd_simulate(settings: Settings, args: argparse.Namespace) -> int:
    from agents.simulator.runner import run_fleet
    from vmpulse.demo import demo_vm_ids

    if args.vms < 0 or args.interval <= 0 or not 0 <= args.bad_rate <= 1:
        print("--vms >= 0, --interval > 0 and 0 <= --bad-rate <= 1", file=sys.stderr)
        return 2
    if args.seed_directory:
        from vmpulse.up import seed_demo_directory

        if not settings.kafka.bootstrap:
            print("--seed-directory needs VMPULSE_KAFKA_BOOTSTRAP", file=sys.stderr)
            return 2
        asyncio.run(seed_demo_directory(settings, demo_vm_ids(args.vms)))
        print(f"demo directory published for {args.vms} VMs", flush=True)
    tcp = settings.bridge.tcp_host
    index, count = args.shard
    return asyncio.run(
        run_fleet(
            demo_vm_ids(args.vms)[index::count],
            interval_s=args.interval,
            dialect=args.dialect,
            transport=args.transport,
            bad_rate=args.bad_rate,
            socket_dir=settings.bridge.socket_dir,
            tcp_addr=(tcp, settings.bridge.tcp_port) if tcp else None,
            agent_secret=settings.bridge.agent_secret.reveal(),
            progress_s=args.progress,
        )
    )


def _cmd_token(settings: Settings, args: argparse.Namespace) -> int:
    import datetime as dt

    from gateway.auth import issue_token

    print(
        issue_token(
            settings.tokens.secret,
            args.user,
            admin=args.admin,
            ttl=dt.timedelta(hours=args.ttl_hours),
        )
    )
    return 0


def _cmd_query(settings: Settings, args: argparse.Namespace) -> int:
    from store.owner import chdb_directory

    directory = chdb_directory(settings.store.read_url)
    try:
        if directory is not None:
            result = _query_embedded(settings, directory, args.sql)
        else:
            result = _query_direct(settings, args.sql)
    except QueryFailed as exc:
        print(f"query failed: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(result))
    else:
        print("\t".join(result["columns"]))
        for row in result["rows"]:
            print("\t".join("" if v is None else str(v) for v in row))
    return 0


def _platform(settings: Settings, args: argparse.Namespace) -> int:
    from vmpulse.platform_cli import run_platform_command

    return run_platform_command(settings, args)


class QueryFailed(Exception):
    pass


def _query_embedded(settings: Settings, directory: Path, sql: str) -> dict[str, Any]:
    """A chDB store: read it here when no process has it open, else through the `vmpulse up`
    that has it (its gateway answers admin SQL), else name the process that has it.

    chDB lets one process open a directory (store/owner.py). While this command
    reads, it holds the store: a worker starting meanwhile is told who has it.
    """
    from store.exceptions import StoreError
    from store.owner import OwnerLock, current_owner

    owner = current_owner(directory)
    if owner is not None:
        info = read_up_info(settings.data_dir)
        if info is not None and info.pid == owner.pid and info.gateway_url:
            return _query_via_gateway(settings, info.gateway_url, sql)
        raise QueryFailed(
            f"the embedded store {directory} is open in {owner.describe()}, and chDB lets "
            "one process open it: stop that process to query here, or query through a "
            "running `vmpulse up`, or store in a ClickHouse server (VMPULSE_CLICKHOUSE_URL)"
        )
    if not directory.is_dir():
        raise QueryFailed(
            f"no store at {directory}: no worker has stored there yet (check "
            "VMPULSE_CLICKHOUSE_URL or VMPULSE_DATA_DIR)"
        )
    try:
        lock = OwnerLock.take(directory, "vmpulse query")
    except StoreError as exc:  # a worker took it since we looked
        raise QueryFailed(str(exc)) from exc
    try:
        return _query_direct(settings, sql)
    finally:
        lock.release()


def _query_via_gateway(settings: Settings, url: str, sql: str) -> dict[str, Any]:
    """Ask the gateway of the running `vmpulse up` (admin SQL, as an admin)."""
    from gateway.auth import issue_token

    token = issue_token(settings.tokens.secret, "admin", admin=True)
    req = urllib.request.Request(
        f"{url}/api/query",
        data=json.dumps({"sql": sql}).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return dict(json.loads(resp.read()))
    except urllib.error.HTTPError as exc:
        body = exc.read().decode(errors="replace")
        try:
            body = json.loads(body).get("error", body)
        except ValueError:
            pass
        raise QueryFailed(f"{exc.code}: {body}") from exc
    except urllib.error.URLError as exc:
        raise QueryFailed(f"gateway at {url} not reachable: {exc.reason}") from exc


def _query_direct(settings: Settings, sql: str) -> dict[str, Any]:
    """Read as the gateway does (same policy, limits and, on a server, read-only user)."""
    import dataclasses

    from store.exceptions import ReadError
    from store.reader import Reader, ReadLimits

    limits = dataclasses.replace(ReadLimits.from_settings(settings), concurrency=1, per_user=1)
    reader = Reader(settings.store.read_url, limits)

    async def run() -> dict[str, Any]:
        await reader.start()
        async with reader.session("cli") as read:
            return await read.admin_query(sql)

    try:
        return asyncio.run(run())
    except ReadError as exc:
        raise QueryFailed(str(exc)) from exc
    finally:
        reader.close()


def _cmd_dlq(settings: Settings, args: argparse.Namespace) -> int:
    import dataclasses

    from infra.dlq_reader import read_dlq
    from vmpulse.dlq_tool import locate_broker, render

    bootstrap, prefix = locate_broker(
        settings.kafka.bootstrap, settings.kafka.topic_prefix, settings.data_dir
    )
    if not bootstrap:
        print(
            "no broker: set VMPULSE_KAFKA_BOOTSTRAP or start `vmpulse up` (it writes up.json)",
            file=sys.stderr,
        )
        return 2
    from aiokafka.errors import KafkaError

    try:
        summary = asyncio.run(
            read_dlq(
                bootstrap,
                prefix,
                max_per_partition=max(1, args.scan),
                latest=args.latest,
                auth=settings.kafka.auth,
            )
        )
    except KafkaError as exc:  # no broker there, or it refuses us: say so, not a traceback
        print(f"cannot read the DLQ from Kafka at {bootstrap}: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(dataclasses.asdict(summary)) if args.json else render(summary))
    return 0


_COMMANDS = {
    "up": _cmd_up,
    "worker": _cmd_worker,
    "bridge": _cmd_bridge,
    "hypervisor": _cmd_hypervisor,
    "gateway": _cmd_gateway,
    "simulate": _cmd_simulate,
    "token": _cmd_token,
    "query": _cmd_query,
    "reader-grants": _cmd_reader_grants,
    "probe": _cmd_probe,
    "dlq": _cmd_dlq,
    "emit": _platform,
    "directory": _platform,
}


if __name__ == "__main__":
    sys.exit(main())
