"""Node configuration with RocketMQ's own property names.

Field names are RocketMQ's camelCase keys on purpose: they are an external format (broker.conf,
namesrv.conf, GET_BROKER_CONFIG, UPDATE_NAMESRV_CONFIG), and an operator moving from Java
RocketMQ keeps their files. Unknown keys are reported, never fatal.
"""

from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass
from pathlib import Path

from rmqnode.storage.dispatch import parse_delay_levels
from rmqnode.validation import LABEL_PATTERN, TOPIC_MAX_LENGTH

DEFAULT_HOME = Path(os.environ.get("RMQNODE_HOME", Path.home() / ".rmqnode"))

DEFAULT_DELAY_LEVELS = "1s 5s 10s 30s 1m 2m 3m 4m 5m 6m 7m 8m 9m 10m 20m 30m 1h 2h"


@dataclass
class NamesrvConfig:
    listenPort: int = 9876
    listenAddress: str = "127.0.0.1"  # ours: loopback unless the operator chooses otherwise
    rocketmqHome: str = str(DEFAULT_HOME)
    kvConfigPath: str = str(DEFAULT_HOME / "namesrv" / "kvConfig.json")
    configStorePath: str = str(DEFAULT_HOME / "namesrv" / "namesrv.properties")
    productEnvName: str = "center"
    clusterTest: bool = False
    orderMessageEnable: bool = False
    serverChannelMaxIdleTimeSeconds: int = 120
    brokerChannelExpiredMillis: int = 120_000  # ours: RouteInfoManager's fixed 120 s in Java
    scanNotActiveBrokerIntervalMillis: int = 10_000
    maxBufferedInputBytes: int = 128 * 1024 * 1024  # ours, as BrokerConfig's
    frameCompleteTimeoutMillis: int = 30_000  # ours, as BrokerConfig's
    configBlackList: str = "configBlackList;configStorePath;kvConfigPath"


@dataclass
class BrokerConfig:
    # identity and cluster
    brokerClusterName: str = "DefaultCluster"
    brokerName: str = "broker-a"
    brokerId: int = 0
    brokerIP1: str = "127.0.0.1"
    brokerIP2: str = ""
    listenPort: int = 10911
    listenAddress: str = "127.0.0.1"  # ours: where to bind; brokerIP1 is what clients are told
    haListenPort: int = 0  # 0: listenPort + 1, as in Java (listenPort 0: a free port too)
    namesrvAddr: str = ""
    brokerRole: str = "ASYNC_MASTER"
    brokerPermission: int = 6
    registerNameServerPeriod: int = 30_000
    registerBrokerTimeoutMills: int = 6_000
    # replication (Java's HAService): brokerRole SLAVE with brokerId > 0 copies the CommitLog
    # of the master of its brokerName, whose HA address is haMasterAddress or, empty, the one
    # the name server answers a registration with
    haMasterAddress: str = ""
    haSendHeartbeatInterval: int = 5000
    haHousekeepingInterval: int = 20_000
    haTransferBatchSize: int = 32 * 1024
    haSlaveFallbehindMax: int = 256 * 1024 * 1024
    # pulls: a master suggests a slave (the group's whichBrokerWhenConsumeSlowly) to a consumer
    # reading further back than this share of the machine's memory, when slaveReadEnable
    slaveReadEnable: bool = False
    accessMessageInMemoryMaxRatio: int = 40
    offsetCheckInSlave: bool = False  # a slave corrects a pull's bad offset itself
    # topics and groups
    autoCreateTopicEnable: bool = True
    autoCreateSubscriptionGroup: bool = True
    defaultTopicQueueNums: int = 8
    clusterTopicEnable: bool = True
    brokerTopicEnable: bool = True
    traceTopicEnable: bool = False  # create msgTraceTopicName at start, for client traces
    msgTraceTopicName: str = "RMQ_SYS_TRACE_TOPIC"
    # store
    storePathRootDir: str = str(DEFAULT_HOME / "store")
    storePathCommitLog: str = ""  # empty: <storePathRootDir>/commitlog
    mappedFileSizeCommitLog: int = 1024 * 1024 * 1024
    mappedFileSizeConsumeQueue: int = 300_000 * 20
    maxHashSlotNum: int = 5_000_000
    maxIndexNum: int = 5_000_000 * 4
    messageIndexEnable: bool = True
    flushDiskType: str = "ASYNC_FLUSH"
    flushIntervalCommitLog: int = 500
    syncFlushTimeout: int = 5000
    slaveTimeout: int = 3000  # how long a SYNC_MASTER send waits for a slave's ack
    maxMessageSize: int = 4 * 1024 * 1024
    fileReservedTime: int = 72
    deleteWhen: str = "04"
    diskMaxUsedSpaceRatio: int = 75
    diskSpaceWarningLevelRatio: int = 90
    messageDelayLevel: str = DEFAULT_DELAY_LEVELS
    # consuming
    longPollingEnable: bool = True
    shortPollingTimeMills: int = 1000
    enablePropertyFilter: bool = False  # SQL92 subscriptions (refused without it, as Java)
    # POP consumption (5.x)
    reviveQueueNum: int = 8
    reviveInterval: int = 1000
    popFromRetryProbability: int = 20
    popPollingSize: int = 1024
    # transactions
    transactionTimeOut: int = 6000
    transactionCheckMax: int = 15
    transactionCheckInterval: int = 60_000
    # request-reply: a reply is pushed to its requester, and also stored in
    # <cluster>_REPLY_TOPIC unless this is false
    storeReplyMessageEnable: bool = True
    # transport
    serverChannelMaxIdleTimeSeconds: int = 120
    maxFrameLength: int = 16 * 1024 * 1024  # ours: com.rocketmq.remoting.frameMaxLength in Java
    # ours: bytes of incomplete frames the node holds, all connections together; past it the
    # connections holding the most are closed (peers sending most of a big frame and stalling)
    maxBufferedInputBytes: int = 128 * 1024 * 1024
    # ours: a frame whose first bytes arrived must be complete within this, or its connection
    # is closed (checked every few seconds; a client sending whole frames never meets it)
    frameCompleteTimeoutMillis: int = 30_000
    # gRPC (RocketMQ 5.x clients; the proxy's grpcServerPort): 0 picks a free port, -1 is off.
    # TLS when a PEM certificate and key are given, plaintext otherwise.
    grpcServerPort: int = 8081
    grpcTlsCertPath: str = ""
    grpcTlsKeyPath: str = ""
    # A push consumer's (auto_renew) messages: invisible this long when received, renewed
    # this long before they would show again, for at most this long in all (the proxy's
    # defaultInvisibleTimeMills, renewAheadTimeMillis, renewMaxTimeMillis).
    grpcDefaultInvisibleTimeMills: int = 60_000
    grpcRenewAheadTimeMills: int = 10_000
    grpcRenewMaxTimeMills: int = 3 * 3600 * 1000
    # plain ACL (AccessKey/SecretKey signatures, per-account topic and group permissions):
    # off by default, as in Java. The rules are read from aclFilePath (relative: from the
    # node's home), by default <home>/conf/plain_acl.yml, and re-read when the file changes.
    aclEnable: bool = False
    aclFilePath: str = ""

    @property
    def commit_log_dir(self) -> str:
        return self.storePathCommitLog or os.path.join(self.storePathRootDir, "commitlog")

    @property
    def broker_addr(self) -> str:
        return f"{self.brokerIP1}:{self.listenPort}"

    @property
    def ha_server_addr(self) -> str:
        return f"{self.brokerIP2 or self.brokerIP1}:{self.haListenPort or self.listenPort + 1}"


class ConfigError(ValueError):
    """A configuration value that cannot be used; the message names the key and the file."""


def read_properties(text: str) -> dict[str, str]:
    """Java .properties as RocketMQ uses them: key=value (or key: value), # and ! comments."""
    props: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line[0] in "#!":
            continue
        sep = min((i for i in (line.find("="), line.find(":")) if i >= 0), default=-1)
        if sep < 0:
            props[line] = ""
            continue
        props[line[:sep].strip()] = line[sep + 1:].strip()
    return props


def write_properties(config: object) -> str:
    """`key=value` lines, the body of GET_BROKER_CONFIG / GET_NAMESRV_CONFIG."""
    return "".join(f"{k}={_text(v)}\n" for k, v in dataclasses.asdict(config).items())


def _text(value: object) -> str:
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


def _convert(name: str, kind: type, value: str, origin: str) -> object:
    if kind is bool:
        if value.lower() not in ("true", "false"):
            raise ConfigError(f"{origin}: {name} must be true or false, not {value!r}")
        return value.lower() == "true"
    if kind is int:
        try:
            return int(value)
        except ValueError:
            raise ConfigError(f"{origin}: {name} must be a whole number, not {value!r}") from None
    return value


_INT_MAX = (1 << 31) - 1
_LONG_MAX = (1 << 63) - 1
# What each number may be: Java's types (int or long) and what keeps the node working (a
# CommitLog file must hold a record, a port is 16 bits). Absent keys take any value of their
# type that converts.
RANGES: dict[str, tuple[int, int]] = {
    "listenPort": (0, 65535), "haListenPort": (0, 65535), "brokerId": (0, _LONG_MAX),
    "brokerPermission": (0, 7), "registerNameServerPeriod": (1, _INT_MAX),
    "registerBrokerTimeoutMills": (1, _INT_MAX), "defaultTopicQueueNums": (1, 1024),
    "mappedFileSizeCommitLog": (65536, _INT_MAX), "mappedFileSizeConsumeQueue": (20, _INT_MAX),
    "maxHashSlotNum": (1, _INT_MAX), "maxIndexNum": (1, _INT_MAX),
    "flushIntervalCommitLog": (1, _INT_MAX), "syncFlushTimeout": (0, _LONG_MAX),
    "maxMessageSize": (1, _INT_MAX), "fileReservedTime": (0, _INT_MAX),
    "diskMaxUsedSpaceRatio": (10, 95), "diskSpaceWarningLevelRatio": (10, 100),
    "shortPollingTimeMills": (0, _INT_MAX), "reviveQueueNum": (1, 1024),
    "reviveInterval": (1, _INT_MAX), "popFromRetryProbability": (0, 100),
    "popPollingSize": (1, _INT_MAX), "transactionTimeOut": (0, _LONG_MAX),
    "transactionCheckMax": (0, _INT_MAX), "transactionCheckInterval": (1, _LONG_MAX),
    "serverChannelMaxIdleTimeSeconds": (1, _INT_MAX), "maxFrameLength": (1024, _INT_MAX),
    "brokerChannelExpiredMillis": (1, _LONG_MAX),
    "slaveTimeout": (0, _INT_MAX),
    "scanNotActiveBrokerIntervalMillis": (1, _LONG_MAX),
    "maxBufferedInputBytes": (1 << 20, _LONG_MAX), "frameCompleteTimeoutMillis": (1, _LONG_MAX),
    "grpcServerPort": (-1, 65535), "grpcDefaultInvisibleTimeMills": (1000, 12 * 3600 * 1000),
    "grpcRenewAheadTimeMills": (0, _INT_MAX), "grpcRenewMaxTimeMills": (0, _LONG_MAX),
    "haSendHeartbeatInterval": (1, _INT_MAX), "haHousekeepingInterval": (1, _INT_MAX),
    "haTransferBatchSize": (1, _INT_MAX), "haSlaveFallbehindMax": (0, _INT_MAX),
    "accessMessageInMemoryMaxRatio": (0, 100),
}
CHOICES: dict[str, tuple[str, ...]] = {
    "flushDiskType": ("ASYNC_FLUSH", "SYNC_FLUSH"),
    "brokerRole": ("ASYNC_MASTER", "SYNC_MASTER", "SLAVE"),
}
_HOUR = re.compile(r"(?:[01]?[0-9]|2[0-3])")
_ADDR = re.compile(r"[^\s:;]+:[0-9]{1,5}")


def _text_problem(name: str, value: str) -> str | None:
    """What is wrong with a string setting, or None."""
    if name in CHOICES and value not in CHOICES[name]:
        return f"must be one of {', '.join(CHOICES[name])}"
    if name in ("brokerName", "brokerClusterName", "msgTraceTopicName") and not (
            len(value) <= TOPIC_MAX_LENGTH and LABEL_PATTERN.fullmatch(value)
            and value.strip(".")):  # each is a topic too: no more than a topic's length
        return "must be 1 to 127 of the characters %|a-zA-Z0-9_.-"
    if name == "deleteWhen" and not all(_HOUR.fullmatch(h) for h in value.split(";")):
        return "must be hours of the day (00-23) separated by ';'"
    if name == "messageDelayLevel":
        try:
            if not parse_delay_levels(value):
                return "must name at least one level"
        except ValueError as exc:
            return str(exc)
    if name == "namesrvAddr" and value and not all(
            _ADDR.fullmatch(a.strip()) and int(a.rpartition(":")[2]) <= 65535
            for a in value.replace(",", ";").split(";") if a.strip()):
        return "must be host:port addresses separated by ';'"
    if name == "haMasterAddress" and value and not (
            _ADDR.fullmatch(value) and int(value.rpartition(":")[2]) <= 65535):
        return "must be the master's HA address, host:port"
    if name in ("brokerIP1", "listenAddress", "storePathRootDir") and not value.strip():
        return "must not be empty"
    return None


def check(config: object, props: dict[str, str], origin: str) -> dict[str, object]:
    """The keys this config knows, converted to their fields' types and checked, without
    setting any: so that a change is applied whole or not at all."""
    known = field_names(config)
    values: dict[str, object] = {}
    for name, raw in props.items():
        if name not in known:
            continue
        value = _convert(name, type(getattr(config, name)), raw, origin)
        if name in RANGES and not RANGES[name][0] <= value <= RANGES[name][1]:  # type: ignore
            lo, hi = RANGES[name]
            raise ConfigError(f"{origin}: {name}={raw} is out of range; allowed {lo}..{hi}")
        problem = _text_problem(name, value) if isinstance(value, str) else None
        if problem:
            raise ConfigError(f"{origin}: {name}={raw!r} {problem}")
        values[name] = value
    return values


MASTER_ID = 0
SLAVE = "SLAVE"


def check_role(config: BrokerConfig) -> None:
    """brokerRole and brokerId go together: a slave's id is above 0 (Java refuses to start
    otherwise), a master's is 0. Java sets a master's id to 0 whatever the file says; here a
    master given another id is refused, since it is more likely a slave missing its role."""
    if config.brokerRole == SLAVE and config.brokerId <= MASTER_ID:
        raise ConfigError(f"brokerRole=SLAVE needs brokerId > 0, not {config.brokerId} "
                          "(brokerId 0 is the master)")
    if config.brokerRole != SLAVE and config.brokerId != MASTER_ID:
        raise ConfigError(f"brokerId={config.brokerId} is a slave's id: a master "
                          f"(brokerRole={config.brokerRole}) has brokerId 0; set "
                          "brokerRole=SLAVE for a slave")


def apply(config: object, props: dict[str, str], origin: str) -> None:
    """Set the keys this config knows, converted and checked; others are left. All or nothing:
    one bad value leaves every field as it was."""
    for name, value in check(config, props, origin).items():
        setattr(config, name, value)


def field_names(config: object) -> set[str]:
    return {f.name for f in dataclasses.fields(config)}  # type: ignore[arg-type]


__all__ = ["NamesrvConfig", "BrokerConfig", "ConfigError", "read_properties", "write_properties",
           "check", "apply", "check_role", "field_names", "DEFAULT_HOME", "RANGES", "CHOICES",
           "MASTER_ID", "SLAVE"]
