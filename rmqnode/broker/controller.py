"""The Broker role: owns the store, the remoting server and the name server registration."""

from __future__ import annotations

import asyncio
import time
import zlib
from functools import partial

from rmqnode import log, validation
from rmqnode.acl.validator import PlainAccessValidator, acl_file
from rmqnode.broker.acl_admin import AclAdminProcessor
from rmqnode.broker.admin import AdminProcessor
from rmqnode.broker.admin_clients import ClientCallProcessor
from rmqnode.broker.client_processor import ClientProcessor
from rmqnode.broker.clients import ClientManager
from rmqnode.broker.consume_stats import ConsumeStatsProcessor
from rmqnode.broker.groups import SubscriptionGroupManager
from rmqnode.broker.offsets import ConsumerOffsetManager
from rmqnode.broker.order_info import ConsumerOrderInfoManager
from rmqnode.broker.pop import PopProcessor
from rmqnode.broker.pull import PullProcessor
from rmqnode.broker.revive import ReviveService
from rmqnode.broker.runtime import RuntimeProcessor
from rmqnode.broker.schedule import ScheduleService
from rmqnode.broker.query import QueryProcessor
from rmqnode.broker.reply import ReplyProcessor
from rmqnode.broker.send import SendProcessor, handle_send
from rmqnode.broker.slave_sync import SlaveSynchronize
from rmqnode.broker.stats import DAY, HOUR, MINUTE, WINDOWS, BrokerStats
from rmqnode.broker.topics import TopicConfig, TopicConfigManager
from rmqnode.broker.transaction import EndTransactionProcessor, TransactionChecker
from rmqnode.config import DEFAULT_HOME, SLAVE, BrokerConfig
from rmqnode.errors import ConnectionLost, RemotingTimeout
from rmqnode.ha.service import HAService
from rmqnode.net import fastjson
from rmqnode.net.client import RemotingClient
from rmqnode.net.codec import RemotingCommand
from rmqnode.net.codes import RequestCode, ResponseCode
from rmqnode.net.connection import Connection, Dispatcher, answers_together
from rmqnode.net.server import RemotingServer
from rmqnode.storage.reput import ReputAfterRead
from rmqnode.storage.store import MessageStore

_log = log.get("rmqnode.broker")


def namesrv_list(value: str) -> list[str]:
    return [a.strip() for a in value.replace(",", ";").split(";") if a.strip()]


class BrokerController:
    def __init__(self, config: BrokerConfig) -> None:
        self.config = config
        self.topics = TopicConfigManager(config)
        self.offsets = ConsumerOffsetManager(config)
        self.groups = SubscriptionGroupManager(config)
        self.order_info = ConsumerOrderInfoManager(config, self.topics, self.groups)
        self.clients = ClientManager()
        self.store = MessageStore(config)
        self.store.flusher.answering = answers_together  # one write a connection
        self.ha = HAService(config, self.store)  # replication: every node listens, slaves pull
        self.stats = BrokerStats(config.brokerClusterName)  # VIEW_BROKER_STATS_DATA
        self.dispatcher = Dispatcher()
        # A read's puts are dispatched when it ends if it is the broker's only connection.
        self.dispatcher.around_read = ReputAfterRead(
            self.store, lambda: len(self.server.connections) == 1)
        sender = SendProcessor(self)
        for code in (RequestCode.SEND_MESSAGE, RequestCode.SEND_MESSAGE_V2,
                     RequestCode.SEND_BATCH_MESSAGE):
            self.dispatcher.register(code, partial(handle_send, sender))
        self.dispatcher.register(RequestCode.CONSUMER_SEND_MSG_BACK, sender.send_back)
        self.dispatcher.update(ReplyProcessor(self, sender).table())
        self.dispatcher.register(RequestCode.END_TRANSACTION,
                                 EndTransactionProcessor(self).handle)
        self.schedule = ScheduleService(self)
        self.transactions = TransactionChecker(self)
        self.pull = PullProcessor(self)
        self.revive = ReviveService(self)
        self.popper = PopProcessor(self)
        self.dispatcher.update(self.popper.table())
        for code in (RequestCode.PULL_MESSAGE, RequestCode.LITE_PULL_MESSAGE):
            self.dispatcher.register(code, self.pull.handle)
        self.dispatcher.update(ClientProcessor(self).table())
        self.dispatcher.update(QueryProcessor(self).table())
        self.dispatcher.update(AdminProcessor(self).table())
        for processor in (RuntimeProcessor, ConsumeStatsProcessor, ClientCallProcessor,
                          AclAdminProcessor):
            self.dispatcher.update(processor(self).table())
        # aclEnable: every request the server takes is checked first (Java's RPC hook)
        self.acl = PlainAccessValidator(acl_file(str(DEFAULT_HOME), config.aclFilePath)) \
            if config.aclEnable else None
        served = self.dispatcher if self.acl is None else self.acl.guard(self.dispatcher)
        self.server = RemotingServer(served, config.listenAddress, config.listenPort,
                                     max_frame=config.maxFrameLength,
                                     idle_timeout=config.serverChannelMaxIdleTimeSeconds,
                                     max_buffered_input=config.maxBufferedInputBytes,
                                     frame_timeout=config.frameCompleteTimeoutMillis / 1000)
        self.server.close_listeners.append(self._on_close)
        self.namesrv_client = RemotingClient()
        self._register_task: asyncio.Task | None = None
        self._background: set[asyncio.Task] = set()
        self.grpc = None  # the gRPC server (rmqnode.grpc.server), when grpcServerPort >= 0
        self.slave_sync = SlaveSynchronize(self)

    @property
    def is_slave(self) -> bool:
        return self.config.brokerRole == SLAVE

    @property
    def addr(self) -> str:
        return self.config.broker_addr

    async def start(self) -> None:
        self.topics.load()
        self.topics.persist()
        self.offsets.load()
        self.groups.load()
        self.order_info.load()
        # Every config file is read before the store opens: one that stops the node must not
        # leave the store marked as crashed.
        self.schedule.offsets.load()
        # Bind first: the store host written into every record and message id is the
        # address clients reach, which is only known once the port is (listenPort 0).
        await self.server.start(serving=False)
        self.config.listenPort = self.server.port
        self.store.set_store_host(self.config.broker_addr)
        await asyncio.to_thread(self.store.open)
        if self.store.recovered_abnormally:
            log.lifecycle.info("store.recovered_after_crash", root=self.config.storePathRootDir,
                               commitlog_end=self.store.commitlog.max_offset)
        self.store.start()
        await self.ha.start()  # before registering: haServerAddr names the bound port
        if not self.is_slave:  # a slave's CommitLog is written by replication alone
            self.schedule.start()
            self.transactions.start()
            self.revive.start()
        await self.server.serve()
        if self.config.grpcServerPort >= 0:
            from rmqnode.grpc.server import start_for  # grpcio loads only when it serves
            self.grpc = await start_for(self)
        await self.register_all()
        self._register_task = asyncio.create_task(self._register_loop())
        self._spawn(self._housekeeping_loop())
        self._spawn(self._stats_loop())
        if self.is_slave:
            self._spawn(self.slave_sync.run())
        if self.acl is not None:
            self._spawn(self.acl.watch())
            log.lifecycle.info("acl.enabled", file=self.acl.path,
                               accounts=len(self.acl.rules.accounts))
        log.lifecycle.info("broker.started", addr=self.addr, name=self.config.brokerName,
                           cluster=self.config.brokerClusterName,
                           namesrv=self.config.namesrvAddr or "-")

    async def stop(self) -> None:
        if self._register_task is not None:
            self._register_task.cancel()
        for task in list(self._background):
            task.cancel()
        await self.unregister_all()
        self.pull.holds.release_all()  # held pulls and pops get their answer before we go
        self.popper.holds.release_all()
        await asyncio.sleep(0)
        if self.grpc is not None:
            await self.grpc.stop()
        await self.server.stop()
        self.transactions.stop()
        await self.schedule.stop()
        self.revive.stop()
        await self.ha.stop()
        await self.store.close()
        self.topics.persist_if_dirty()
        self.offsets.persist()
        self.groups.persist_if_dirty()
        self.order_info.persist_if_dirty()
        await self.namesrv_client.close()
        await self.slave_sync.close()
        log.lifecycle.info("broker.stopped", addr=self.addr)

    def _spawn(self, coro) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    def spawn_register(self, only: list[TopicConfig] | None = None) -> asyncio.Task:
        """Re-register with the name servers now, in the background (after topic changes);
        `only` the topics that changed, as Java's registerIncrementBrokerData does, so that
        creating the n-th topic does not cost a registration of all n. The body is built now:
        a registration carries the data version of its own change, or a name server that saw
        a later version first would skip it. The task never fails (failures are logged)."""
        return self._spawn(self._send_registration(*self._registration(only)))

    async def registered(self, registration: asyncio.Task) -> None:
        """Wait, at most registerBrokerTimeoutMills, for a registration to reach the name
        servers: Java answers the request that created a topic only after that, so a client
        that got the answer finds the topic's route."""
        await asyncio.wait({registration}, timeout=self.config.registerBrokerTimeoutMills / 1000)

    async def _stats_loop(self) -> None:
        """Samples every stats item on BrokerStatsManager's clocks, each first at start."""
        step = WINDOWS[MINUTE][1] // 1000
        per_hour, per_day = WINDOWS[HOUR][1] // 1000 // step, WINDOWS[DAY][1] // 1000 // step
        tick = 0
        while True:
            now = int(time.time() * 1000)
            self.stats.tick(MINUTE, now)
            if tick % per_hour == 0:
                self.stats.tick(HOUR, now)
            if tick % per_day == 0:
                self.stats.tick(DAY, now)
            tick += 1
            await asyncio.sleep(step)

    async def _housekeeping_loop(self) -> None:
        """Every 5 s persist offsets, groups and orderly POP's order info; every 10 s drop
        clients silent for 120 s."""
        tick = 0
        while True:
            await asyncio.sleep(5.0)
            tick += 1
            try:
                self.offsets.persist_if_dirty()
                self.groups.persist_if_dirty()
                self.order_info.persist_if_dirty()
            except OSError as exc:
                _log.error("persist.failed", error=exc)
            if tick % 2 == 0:
                for conn in self.clients.expired(asyncio.get_running_loop().time()):
                    _log.info("client.expired", peer=conn.peer)
                    conn.close()

    def _on_close(self, conn: Connection) -> None:
        for group in self.clients.channel_closed(conn):
            self.notify_consumers_changed(group)

    def notify_consumers_changed(self, group: str) -> None:
        """NOTIFY_CONSUMER_IDS_CHANGED, oneway, to every member: rebalance now."""
        info = self.clients.consumers.get(group)
        if info is None:
            return
        for channel in list(info.channels.values()):
            conn = channel.conn
            if conn.is_open:
                conn.oneway(RemotingCommand.request(RequestCode.NOTIFY_CONSUMER_IDS_CHANGED,
                                                    {"consumerGroup": group}))

    def create_topic(self, topic: TopicConfig) -> asyncio.Task:
        """Add or replace a topic, persist topics.json, and tell the name servers now rather
        than at the next 30 s registration (Java registers right after a change, too).
        Returns the registration, for callers that answer once it is done (see registered).
        Every topic the broker creates passes here: its name and queue counts are checked
        before anything is stored."""
        validation.topic(topic.topicName)
        validation.queue_nums(topic.readQueueNums, "readQueueNums")
        validation.queue_nums(topic.writeQueueNums, "writeQueueNums")
        self.topics.table[topic.topicName] = topic
        self.topics.data_version.next()
        self.topics.persist()
        _log.info("topic.created", topic=topic.topicName, queues=topic.writeQueueNums,
                  perm=topic.perm)
        return self.spawn_register([topic])

    def ensure_topic(self, name: str, queues: int, perm: int) -> TopicConfig:
        """The topic's config, created first if the broker makes it itself (retry, dead
        letter, revive topics)."""
        found = self.topics.table.get(name)
        if found is None:
            found = TopicConfig(name, queues, queues, perm)
            self.create_topic(found)
        return found

    # -- name server registration (BrokerOuterAPI) -------------------------------------------

    async def _register_loop(self) -> None:
        # Java clamps the period to 10..60 s; the first periodic run comes after 10 s.
        period = min(max(self.config.registerNameServerPeriod, 10_000), 60_000) / 1000.0
        await asyncio.sleep(min(10.0, period))
        while True:
            await self.register_all()
            await asyncio.sleep(period)

    def _header(self) -> dict[str, object]:
        return {"brokerAddr": self.addr, "brokerId": self.config.brokerId,
                "brokerName": self.config.brokerName,
                "clusterName": self.config.brokerClusterName}

    async def register_all(self) -> None:
        await self._send_registration(*self._registration(None))

    def _registration(self, only: list[TopicConfig] | None) -> tuple[dict[str, object], bytes]:
        body = fastjson.dumpb({"filterServerList": [],
                               "topicConfigSerializeWrapper": self.topics.wrapper(only)})
        fields = self._header() | {"haServerAddr": self.config.ha_server_addr,
                                   "compressed": False,
                                   "bodyCrc32": zlib.crc32(body) & 0x7FFFFFFF}
        return fields, body

    async def _send_registration(self, fields: dict[str, object], body: bytes) -> None:
        answers = await asyncio.gather(*(self._register_one(addr, fields, body)
                                         for addr in namesrv_list(self.config.namesrvAddr)))
        answer = next((a for a in answers if a is not None), None)
        if answer is not None and self.is_slave:
            self._learn_master(answer)

    async def _register_one(self, addr: str, fields: dict[str, object],
                            body: bytes) -> RemotingCommand | None:
        """The name server's answer (RegisterBrokerResult in its fields), None if it failed."""
        cmd = RemotingCommand.request(RequestCode.REGISTER_BROKER, fields, body)
        try:
            resp = await self.namesrv_client.invoke(addr, cmd, timeout=24.0)
        except (ConnectionLost, RemotingTimeout) as exc:
            _log.warning("register.failed", namesrv=addr, error=exc)
            return None
        if resp.code != ResponseCode.SUCCESS:
            _log.warning("register.refused", namesrv=addr, code=resp.code, remark=resp.remark)
            return None
        _log.debug("register.ok", namesrv=addr)
        return resp

    def _learn_master(self, answer: RemotingCommand) -> None:
        """A slave's master, from the first name server that answered (as Java takes the
        first result): its address for metadata sync (none while it is down), its HA address
        for replication unless haMasterAddress is set (kept while it is down)."""
        if self.slave_sync.set_master(answer.field("masterAddr") or None):
            self._spawn(self.slave_sync.sync_all())
        ha_addr = answer.field("haServerAddr")
        if ha_addr:
            self.ha.update_master_address(ha_addr)

    async def unregister_all(self) -> None:
        async def one(addr: str) -> None:
            cmd = RemotingCommand.request(RequestCode.UNREGISTER_BROKER, self._header())
            try:
                await self.namesrv_client.invoke(addr, cmd, timeout=3.0)
            except (ConnectionLost, RemotingTimeout) as exc:
                _log.warning("unregister.failed", namesrv=addr, error=exc)

        await asyncio.gather(*(one(a) for a in namesrv_list(self.config.namesrvAddr)))
