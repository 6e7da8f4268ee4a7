"""What a broker says about itself (GET_BROKER_RUNTIME_INFO, GET_BROKER_CONFIG,
GET_SYSTEM_TOPIC_LIST_FROM_BROKER) and the store clean-ups an operator asks for
(CLEAN_EXPIRED_CONSUMEQUEUE, CLEAN_UNUSED_TOPIC): what mqadmin brokerStatus, getBrokerConfig,
exportConfigs, exportMetrics, cleanExpiredCQ and cleanUnusedTopic send.

The answers carry every key a 4.9.8 broker prints, because mqadmin reads some of them back
without checking (exportConfigs fails on a missing config key, exportMetrics parses the
runtime figures). A figure of machinery rmqnode does not have (thread pool queues) is what
an idle Java broker shows: an empty queue of Java's capacity.
"""

from __future__ import annotations

import functools
import importlib.metadata
import math
import shutil
import time
from typing import TYPE_CHECKING

from rmqnode import log
from rmqnode.broker.java_config import JAVA_ONLY_DEFAULTS
from rmqnode.config import field_names, write_properties
from rmqnode.net import fastjson
from rmqnode.net.codec import OUR_VERSION, RemotingCommand
from rmqnode.net.codes import RequestCode
from rmqnode.net.connection import Connection, Handler
from rmqnode.storage.cleanup import disk_used_ratio
from rmqnode.storage.dispatch import SCHEDULE_TOPIC
from rmqnode.storage.queue_cleanup import clean_expired_queues, clean_unused_topics

if TYPE_CHECKING:
    from rmqnode.broker.controller import BrokerController

_log = log.get("rmqnode.broker")

VERSION_DESC = "V4_9_8"
# Beside Java's keys: which server this is. rmqctl reads it to know that per-queue resets
# (queueId and offset in INVOKE_BROKER_TO_RESET_OFFSET, a 5.x field) are honoured here,
# which a Java 4.9.8 broker, announcing the same version, silently ignores.
IMPLEMENTATION_KEY = "rmqnodeVersion"
# Java's TransientStorePool.availableBufferNums() when the pool is off (always, here).
_NO_TRANSIENT_POOL = str((1 << 31) - 1)


@functools.cache  # read from the installed metadata once, not on every runtime info request
def _package_version() -> str:
    try:
        return importlib.metadata.version("rmqnode")
    except importlib.metadata.PackageNotFoundError:  # run from a source tree
        return "0"


def human_bytes(count: int) -> str:
    """MixAll.humanReadableByteCount(bytes, false): `512 B`, `1.5 KiB`, `3.0 GiB`."""
    if count < 1024:
        return f"{count} B"
    exp = min(int(math.log(count) / math.log(1024)), 6)
    return f"{count / 1024 ** exp:.1f} {'KMGTPE'[exp - 1]}iB"


def config_lines(config: object) -> str:
    """GET_BROKER_CONFIG's body: rmqnode's settings with their values, then the keys of a
    4.9.8 broker that rmqnode has no setting for, with Java's defaults (see java_config)."""
    ours = field_names(config)
    return write_properties(config) + "".join(
        f"{k}={v}\n" for k, v in JAVA_ONLY_DEFAULTS.items() if k not in ours)


class RuntimeProcessor:
    def __init__(self, broker: BrokerController) -> None:
        self.broker = broker
        self.boot = int(time.time() * 1000)

    def table(self) -> dict[int, Handler]:
        rc = RequestCode
        return {rc.GET_BROKER_RUNTIME_INFO: self.runtime_info,
                rc.GET_BROKER_CONFIG: self.get_config,
                rc.GET_SYSTEM_TOPIC_LIST_FROM_BROKER: self.system_topics,
                rc.CLEAN_EXPIRED_CONSUMEQUEUE: self.clean_expired_queues,
                rc.CLEAN_UNUSED_TOPIC: self.clean_unused_topics}

    def runtime_info(self, cmd: RemotingCommand, conn: Connection) -> RemotingCommand:
        """prepareRuntimeInfo: the store's figures (DefaultMessageStore.getRuntimeInfo) and
        the broker's, every key a 4.9.8 broker prints."""
        broker, store = self.broker, self.broker.store
        config = broker.config
        uptime = int(time.time() * 1000) - self.boot
        commitlog_dir = config.commit_log_dir
        ratio = disk_used_ratio(commitlog_dir if store.commitlog.files.files
                                else config.storePathRootDir)
        defaults = JAVA_ONLY_DEFAULTS
        table = {
            "brokerVersionDesc": VERSION_DESC, "brokerVersion": str(OUR_VERSION),
            IMPLEMENTATION_KEY: _package_version(),
            "bootTimestamp": str(self.boot),
            "runtime": f"[ {uptime // 86400000} days, {uptime // 3600000 % 24} hours, "
                       f"{uptime // 60000 % 60} minutes, {uptime // 1000 % 60} seconds ]",
            **store.stats.runtime_info(),
            "commitLogMinOffset": str(store.commitlog.min_offset),
            "commitLogMaxOffset": str(store.commitlog.max_offset),
            "commitLogDiskRatio": repr(ratio), f"commitLogDiskRatio_{commitlog_dir}": repr(ratio),
            "consumeQueueDiskRatio": repr(ratio),
            "dispatchBehindBytes": str(max(store.commitlog.max_offset - store.reput_offset, 0)),
            "earliestMessageTimeStamp": str(self._earliest()),
            "pageCacheLockTimeMills": "0", "remainHowManyDataToFlush": human_bytes(
                max(store.commitlog.max_offset - store.flusher.flushed_offset, 0)),
            "remainTransientStoreBufferNumbs": _NO_TRANSIENT_POOL,
            "startAcceptSendRequestTimeStamp": "0",
            **self._capacity(),
            **self._schedule_offsets(),
            **broker.ha.runtime_info(),  # ours: 4.9.8 shows no replication figures here
        }
        for pool, capacity in (("send", "sendThreadPoolQueueCapacity"),
                               ("pull", "pullThreadPoolQueueCapacity"),
                               ("query", "queryThreadPoolQueueCapacity")):
            table |= {f"{pool}ThreadPoolQueueSize": "0", capacity: defaults[capacity],
                      f"{pool}ThreadPoolQueueHeadWaitTimeMills": "0"}
        table |= {"EndTransactionQueueSize": "0", "EndTransactionThreadPoolQueueCapacity":
                  defaults["endTransactionPoolQueueCapacity"]}
        return cmd.response(body=fastjson.dumpb({"table": table}))

    def _capacity(self) -> dict[str, str]:
        """commitLogDirCapacity, of storePathRootDir as Java measures it (when it exists)."""
        try:
            usage = shutil.disk_usage(self.broker.config.storePathRootDir)
        except OSError:
            return {}
        return {"commitLogDirCapacity": f"Total : {human_bytes(usage.total)}, "
                                        f"Free : {human_bytes(usage.free)}."}

    def _schedule_offsets(self) -> dict[str, str]:
        """scheduleMessageOffset_<level>: how far delivery got and how far the level's queue
        goes (ScheduleMessageService.buildRunningStats)."""
        store = self.broker.store
        return {f"scheduleMessageOffset_{level}":
                f"{offset},{store.max_offset(SCHEDULE_TOPIC, level - 1)}"
                for level, offset in self.broker.schedule.offsets.table.items()}

    def _earliest(self) -> int:
        store = self.broker.store
        first = store.commitlog.message_at(store.commitlog.min_offset, read_body=False)
        return first.store_timestamp if first is not None else -1

    def get_config(self, cmd: RemotingCommand, conn: Connection) -> RemotingCommand:
        version = fastjson.dumpb(self.broker.topics.data_version.to_json()).decode()
        return cmd.response(fields={"version": version},
                            body=config_lines(self.broker.config).encode())

    def system_topics(self, cmd: RemotingCommand, conn: Connection) -> RemotingCommand:
        """TopicValidator's system topics, with those this broker made at start (its cluster
        and broker topics): mqadmin leaves them out of what it calls user topics."""
        return cmd.response(body=fastjson.dumpb({"topicList": sorted(self.broker.topics.system)}))

    def clean_expired_queues(self, cmd: RemotingCommand, conn: Connection) -> RemotingCommand:
        dropped = clean_expired_queues(self.broker.store)
        _log.warning("store.expired_queues_cleaned", peer=conn.peer, queues=len(dropped))
        return cmd.response()

    def clean_unused_topics(self, cmd: RemotingCommand, conn: Connection) -> RemotingCommand:
        dropped = clean_unused_topics(self.broker.store, set(self.broker.topics.table))
        _log.warning("store.unused_topics_cleaned", peer=conn.peer, topics=len(dropped))
        return cmd.response()
