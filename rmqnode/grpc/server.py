"""The gRPC listener (RocketMQ 5.x clients, the proxy's port 8081), run by the broker.

A grpc.aio server in the broker's own event loop, so the handlers call the broker in-process
(the Apache proxy's local mode). Plaintext unless a certificate and key are configured (grpcio
binds one or the other per port; Python and Node clients default to plaintext, Java clients
need `enableSsl(false)` against it).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import grpc

from rmqnode import log
from rmqnode.grpc.service import MessagingService
from rmqnode.grpc.v2 import service_pb2_grpc

if TYPE_CHECKING:
    from rmqnode.broker.controller import BrokerController

# Spec §1.3. The default 4 MiB receive limit refuses a 4 MiB body (plus its envelope): the
# proxy takes 130 MiB. Java clients ping every 5 minutes without calls. grpcio sets
# SO_REUSEPORT by default, and then a second server on the same port silently shares it.
# A client that dies closes its connection and its Telemetry stream ends at once (its
# auto-renewed messages are released, renewal.py); one whose host or network went away is
# found by our pings: its connection is dropped 20 s after a ping goes unanswered.
MAX_RECEIVE_BYTES = 130 << 20
OPTIONS = (
    ("grpc.max_receive_message_length", MAX_RECEIVE_BYTES),
    ("grpc.max_send_message_length", -1),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_ping_interval_without_data_ms", 60_000),
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 20_000),
    ("grpc.http2.max_pings_without_data", 0),
    ("grpc.so_reuseport", 0),
)
STOP_GRACE_SECONDS = 1.0  # open streams (Telemetry, long polls) are cut after this


class GrpcServer:
    """Serves MessagingService for one broker on `host:port` (port 0: a free one)."""

    def __init__(self, broker: BrokerController, host: str, port: int,
                 tls_cert: str = "", tls_key: str = "") -> None:
        self.service = MessagingService(broker)
        self.host = host
        self.port = port
        self.tls = bool(tls_cert)
        self._credentials = _credentials(tls_cert, tls_key) if self.tls else None
        self._server: grpc.aio.Server | None = None

    async def start(self) -> None:
        """Bind and serve; OSError when the port cannot be bound (grpcio only returns 0)."""
        server = grpc.aio.server(options=OPTIONS)
        service_pb2_grpc.add_MessagingServiceServicer_to_server(self.service, server)
        address = f"{self.host}:{self.port}"
        if self._credentials is not None:
            bound = server.add_secure_port(address, self._credentials)
        else:
            bound = server.add_insecure_port(address)
        if not bound:
            raise OSError(f"cannot listen for gRPC on {address}")
        self.port = bound
        await server.start()
        self._server = server
        self.service.renewals.start()

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.stop(STOP_GRACE_SECONDS)
            self._server = None
        await self.service.renewals.stop()


def _credentials(cert: str, key: str) -> grpc.ServerCredentials:
    """TLS from PEM files; OSError naming the file that cannot be read."""
    return grpc.ssl_server_credentials([(Path(key).read_bytes(), Path(cert).read_bytes())])


async def start_for(broker: BrokerController) -> GrpcServer:
    """The broker's gRPC server, started as its config says (grpcServerPort >= 0), with the
    lifecycle line tests and operators read (`grpc.started addr=HOST:PORT`)."""
    config = broker.config
    server = GrpcServer(broker, config.listenAddress, config.grpcServerPort,
                        config.grpcTlsCertPath, config.grpcTlsKeyPath)
    await server.start()
    log.lifecycle.info("grpc.started", addr=f"{config.brokerIP1}:{server.port}",
                       tls="on" if server.tls else "off")
    return server
