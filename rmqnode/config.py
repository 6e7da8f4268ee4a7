"""Node configuration with RocketMQ's own property names.

Field names are RocketMQ's camelCase keys on purpose: they are an external format (broker.conf,
namesrv.conf, GET_BROKER_CONFIG, UPDATE_NAMESRV_CONFIG), and an operator moving from Java
RocketMQ keeps their files. Unknown keys are reported, never fatal.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path

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
    haListenPort: int = 0  # 0: listenPort + 1, as in Java
    namesrvAddr: str = ""
    brokerRole: str = "ASYNC_MASTER"
    brokerPermission: int = 6
    registerNameServerPeriod: int = 30_000
    registerBrokerTimeoutMills: int = 6_000
    # topics and groups
    autoCreateTopicEnable: bool = True
    autoCreateSubscriptionGroup: bool = True
    defaultTopicQueueNums: int = 8
    clusterTopicEnable: bool = True
    brokerTopicEnable: bool = True
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
    maxMessageSize: int = 4 * 1024 * 1024
    fileReservedTime: int = 72
    deleteWhen: str = "04"
    diskMaxUsedSpaceRatio: int = 75
    diskSpaceWarningLevelRatio: int = 90
    messageDelayLevel: str = DEFAULT_DELAY_LEVELS
    # consuming
    longPollingEnable: bool = True
    shortPollingTimeMills: int = 1000
    # POP consumption (5.x)
    reviveQueueNum: int = 8
    reviveInterval: int = 1000
    popFromRetryProbability: int = 20
    popPollingSize: int = 1024
    # transactions
    transactionTimeOut: int = 6000
    transactionCheckMax: int = 15
    transactionCheckInterval: int = 60_000
    # transport
    serverChannelMaxIdleTimeSeconds: int = 120
    maxFrameLength: int = 16 * 1024 * 1024  # ours: com.rocketmq.remoting.frameMaxLength in Java

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


def apply(config: object, props: dict[str, str], origin: str) -> None:
    """Set the keys this config knows, converted to their field's type; others are left."""
    known = field_names(config)
    for name, value in props.items():
        if name in known:
            setattr(config, name, _convert(name, type(getattr(config, name)), value, origin))


def field_names(config: object) -> set[str]:
    return {f.name for f in dataclasses.fields(config)}  # type: ignore[arg-type]


__all__ = ["NamesrvConfig", "BrokerConfig", "ConfigError", "read_properties", "write_properties",
           "apply", "field_names", "DEFAULT_HOME"]
