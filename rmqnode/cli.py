"""`rmqnode`: one process playing the NameServer role, the Broker role, or both."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import click

from rmqnode import log
from rmqnode.atomicfile import BrokenFileError
from rmqnode.config import (BrokerConfig, ConfigError, NamesrvConfig, apply, check_role,
                            field_names, read_properties, write_properties)

ROLES = ("namesrv", "broker", "all")


def build_configs(role: str, config_file: str | None, overrides: dict[str, str]
                  ) -> tuple[NamesrvConfig | None, BrokerConfig | None, list[tuple[str, str]]]:
    """Config file first, then command-line overrides; returns the unknown keys, each with
    where it came from (a typo in either must not pass silently)."""
    ns = NamesrvConfig() if role in ("namesrv", "all") else None
    broker = BrokerConfig() if role in ("broker", "all") else None
    props: dict[str, str] = {}
    if config_file:
        try:
            props = read_properties(Path(config_file).read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(f"cannot read config file {config_file}: {exc.strerror}") from None
    layers = [(props, config_file or ""), (overrides, "command line")]
    for cfg in (c for c in (ns, broker) if c is not None):
        for values, origin in layers:
            mine = dict(values)
            if cfg is ns and broker is not None:
                # One process, one file: listenPort is the broker's, namesrvPort the name server's.
                mine.pop("listenPort", None)
                if "namesrvPort" in mine:
                    mine["listenPort"] = mine.pop("namesrvPort")
            apply(cfg, mine, origin)
    known = set().union(*(field_names(c) for c in (ns, broker) if c is not None))
    unknown = [(k, origin) for values, origin in layers for k in values
               if k not in known and k != "namesrvPort"]
    if broker is not None and bool(broker.grpcTlsCertPath) != bool(broker.grpcTlsKeyPath):
        raise ConfigError("grpcTlsCertPath and grpcTlsKeyPath (--tls-cert, --tls-key) "
                          "go together: give both for TLS, neither for plaintext")
    if broker is not None:
        check_role(broker)
    if broker is not None and not broker.namesrvAddr:
        broker.namesrvAddr = os.environ.get("NAMESRV_ADDR", "")
        if not broker.namesrvAddr and ns is not None:
            broker.namesrvAddr = f"{ns.listenAddress}:{ns.listenPort}"
    return ns, broker, unknown


def event_loop_runner() -> Callable[[Coroutine[Any, Any, None]], None]:
    """uvloop's runner when it is installed (the `fast` extra: its C event loop and
    transports cut the per-request cost), else asyncio's; RMQNODE_LOOP=asyncio forces the
    standard loop."""
    if os.environ.get("RMQNODE_LOOP", "uvloop") != "asyncio":
        try:
            import uvloop
        except ImportError:
            pass
        else:
            return uvloop.run
    return asyncio.run


async def run_node(ns_config: NamesrvConfig | None, broker_config: BrokerConfig | None) -> None:
    components = []
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    log.get("rmqnode").info("node.event_loop", loop=type(loop).__module__.split(".")[0])
    try:
        if ns_config is not None:
            from rmqnode.namesrv.server import NameServer
            ns = NameServer(ns_config)
            await ns.start()
            components.append(ns)
            if broker_config is not None and broker_config.namesrvAddr.endswith(":0"):
                broker_config.namesrvAddr = ns.addr
        if broker_config is not None:
            from rmqnode.broker.controller import BrokerController
            broker = BrokerController(broker_config)
            await broker.start()
            components.append(broker)
        await stop.wait()
    finally:
        for component in reversed(components):
            await component.stop()


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="rmqnode", prog_name="rmqnode",
                      message="%(prog)s %(version)s (RocketMQ 4.9.8 remoting protocol and store)")
@click.option("--role", type=click.Choice(ROLES), default="all", show_default=True,
              help="Which RocketMQ roles this process plays.")
@click.option("-c", "--config", "config_file", type=click.Path(dir_okay=False),
              help="A RocketMQ-style broker.conf / namesrv.conf (same property names).")
@click.option("-n", "--namesrv-addr", help="Name servers the broker registers with, "
              "'host:port;host:port'. Default: $NAMESRV_ADDR, else this node's own.")
@click.option("--listen-port", type=int, help="Port of the role's server (broker: listenPort, "
              "default 10911; namesrv alone: default 9876). 0 picks a free port.")
@click.option("--namesrv-port", type=int, help="With --role all: the name server's port "
              "(default 9876).")
@click.option("--bind", help="Address to listen on (default 127.0.0.1; use 0.0.0.0 to serve "
              "other hosts).")
@click.option("--broker-ip", help="brokerIP1: the address clients are told to use.")
@click.option("--store", help="storePathRootDir (default $RMQNODE_HOME/store, "
              "RMQNODE_HOME defaulting to ~/.rmqnode).")
@click.option("--grpc-port", type=int, help="Port of the gRPC endpoint for RocketMQ 5.x clients "
              "(grpcServerPort, default 8081; 0 picks a free port, -1 turns it off).")
@click.option("--no-grpc", is_flag=True, help="Serve no gRPC endpoint (grpcServerPort=-1).")
@click.option("--tls-cert", type=click.Path(dir_okay=False), help="PEM certificate: the gRPC "
              "endpoint speaks TLS (with --tls-key) instead of plaintext.")
@click.option("--tls-key", type=click.Path(dir_okay=False), help="PEM private key of --tls-cert.")
@click.option("-D", "--set", "settings", multiple=True, metavar="KEY=VALUE",
              help="Any config property, e.g. -D flushDiskType=SYNC_FLUSH (repeatable).")
@click.option("-p", "--print-config", is_flag=True, help="Print the effective config and exit.")
@click.option("-v", "--verbose", count=True, help="More log lines (-v info, -vv debug).")
def main(role: str, config_file: str | None, namesrv_addr: str | None, listen_port: int | None,
         namesrv_port: int | None, bind: str | None, broker_ip: str | None, store: str | None,
         grpc_port: int | None, no_grpc: bool, tls_cert: str | None, tls_key: str | None,
         settings: tuple[str, ...], print_config: bool, verbose: int) -> None:
    """Run a RocketMQ name server and/or broker speaking RocketMQ's own protocol and store format.

    \b
    Examples:
      rmqnode                                  # name server :9876 + broker :10911
      rmqnode --role namesrv
      rmqnode --role broker -c broker.conf -n 127.0.0.1:9876
      rmqnode -D flushDiskType=SYNC_FLUSH --store /var/lib/rmq
    """
    log.setup(verbose)
    overrides: dict[str, str] = {}
    for item in settings:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.UsageError(f"-D expects KEY=VALUE, got {item!r}")
        overrides[key.strip()] = value.strip()
    if listen_port is not None:
        overrides["listenPort"] = str(listen_port)
    if namesrv_port is not None:
        if role != "all":
            raise click.UsageError("--namesrv-port only applies to --role all "
                                   "(use --listen-port for a lone name server)")
        overrides["namesrvPort"] = str(namesrv_port)
    if bind:
        overrides["listenAddress"] = bind
    if broker_ip:
        overrides["brokerIP1"] = broker_ip
    if store:
        overrides["storePathRootDir"] = store
    if namesrv_addr:
        overrides["namesrvAddr"] = namesrv_addr
    if no_grpc and grpc_port is not None:
        raise click.UsageError("--no-grpc and --grpc-port exclude each other")
    if no_grpc or grpc_port is not None:
        overrides["grpcServerPort"] = "-1" if no_grpc else str(grpc_port)
    if tls_cert:
        overrides["grpcTlsCertPath"] = tls_cert
    if tls_key:
        overrides["grpcTlsKeyPath"] = tls_key
    if role == "namesrv":
        for key in ("brokerIP1", "storePathRootDir", "namesrvAddr"):
            if key in overrides:
                raise click.UsageError(f"{key} does not apply to --role namesrv")
    try:
        ns_config, broker_config, unknown = build_configs(role, config_file, overrides)
    except ConfigError as exc:
        click.echo(f"rmqnode: {exc}", err=True)
        sys.exit(2)
    for key, origin in unknown:
        where = "-D" if origin == "command line" else origin
        click.echo(f"rmqnode: warning: unknown config key {key!r} in {where} (ignored)", err=True)
    if print_config:
        for cfg in (ns_config, broker_config):
            if cfg is not None:
                click.echo(f"# {type(cfg).__name__}")
                click.echo(write_properties(cfg), nl=False)
        return
    try:
        event_loop_runner()(run_node(ns_config, broker_config))
    except BrokenFileError as exc:  # the message names the file and what to do
        click.echo(f"rmqnode: {exc}", err=True)
        sys.exit(1)
    except OSError as exc:
        click.echo(f"rmqnode: {exc.strerror or exc}"
                   + (f" ({exc.filename})" if getattr(exc, "filename", None) else ""), err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
