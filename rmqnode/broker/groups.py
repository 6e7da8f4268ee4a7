"""Subscription group configs (SubscriptionGroupManager) in subscriptionGroup.json.

Groups are created on first use when autoCreateSubscriptionGroup is on, with RocketMQ's
defaults; fields we do not know (from newer Java versions) are kept as they were read."""

from __future__ import annotations

from typing import Any

from rmqnode import validation
from rmqnode.broker.configfile import JsonConfigFile
from rmqnode.broker.topics import DataVersion
from rmqnode.errors import FAQ, RemotingError
from rmqnode.net.codes import ResponseCode

SYSTEM_GROUPS = ("SELF_TEST_C_GROUP", "CID_ONSAPI_OWNER", "CID_ONSAPI_PERMISSION",
                 "CID_ONSAPI_PULL", "CID_RMQ_SYS_TRANS", "TOOLS_CONSUMER", "FILTERSRV_CONSUMER")


# SubscriptionGroupConfig's typed fields (4.9.8) and the values each may take; fields of newer
# versions pass through as they came.
_BOOLS = ("consumeEnable", "consumeFromMinEnable", "consumeBroadcastEnable",
          "notifyConsumerIdsChangedEnable")
_INTS = {"retryQueueNums": (0, validation.QUEUE_NUMS_MAX), "retryMaxTimes": validation.INT32,
         "brokerId": validation.INT64, "whichBrokerWhenConsumeSlowly": validation.INT64}


def checked_group(config: object) -> dict[str, Any]:
    """A SubscriptionGroupConfig from a request body, its name and typed fields checked the
    way fastjson would bind them; SYSTEM_ERROR naming the first bad field otherwise."""
    if not isinstance(config, dict):
        raise RemotingError(ResponseCode.SYSTEM_ERROR, "the body is not a group config")
    validation.group(config.get("groupName"))
    for key in _BOOLS:
        if key in config and not isinstance(config[key], bool):
            raise RemotingError(ResponseCode.SYSTEM_ERROR,
                                f"{key} must be true or false, not {validation.quote(config[key])}")
    for key, (lo, hi) in _INTS.items():
        value = config.get(key)
        if key in config and (type(value) is not int or not lo <= value <= hi):
            raise RemotingError(ResponseCode.SYSTEM_ERROR, f"{key} must be a whole number in "
                                f"[{lo}, {hi}], not {validation.quote(value)}")
    return config


def default_group(name: str) -> dict[str, Any]:
    return {"brokerId": 0, "consumeBroadcastEnable": True, "consumeEnable": True,
            "consumeFromMinEnable": True, "groupName": name,
            "notifyConsumerIdsChangedEnable": True, "retryMaxTimes": 16, "retryQueueNums": 1,
            "whichBrokerWhenConsumeSlowly": 1}


def _group_entry(name: str, group: dict[str, Any]) -> dict[str, Any]:
    """One subscriptionGroupTable entry, kept as read (fields of newer Java versions too)."""
    if not validation.is_name(name) or group.get("groupName") != name:
        raise ValueError("not a group name, or not its entry's groupName")
    return group


class SubscriptionGroupManager(JsonConfigFile):
    file_name = "subscriptionGroup.json"

    def __init__(self, config) -> None:
        super().__init__(config)
        self.table: dict[str, dict[str, Any]] = {n: default_group(n) for n in SYSTEM_GROUPS}
        self.data_version = DataVersion()

    def decode(self, data: dict[str, Any]) -> None:
        table = self.valid_entries(self.table_of(data, "subscriptionGroupTable"), _group_entry)
        self.data_version = DataVersion.from_json(data.get("dataVersion"))
        self.table.update(table)

    def encode(self) -> dict[str, Any]:
        return {"dataVersion": self.data_version.to_json(),
                "subscriptionGroupTable": self.table}

    def find(self, name: str, auto_create: bool | None = None) -> dict[str, Any] | None:
        """The group's config; created with defaults if unknown and auto-creation is on.
        A name that is not a valid group name is refused here, before anything is created."""
        group = self.table.get(name)
        if group is None:
            validation.group(name)
        create = self.config.autoCreateSubscriptionGroup if auto_create is None else auto_create
        if group is None and create:
            group = self.update(default_group(name))
        return group

    def consumable(self, name: str) -> dict[str, Any]:
        """The config of a group about to pull or pop; Java's error when it may not."""
        group = self.find(name)
        if group is None:
            raise RemotingError(ResponseCode.SUBSCRIPTION_GROUP_NOT_EXIST,
                                f"subscription group [{name}] does not exist, {FAQ.strip()}")
        if not group.get("consumeEnable", True):
            raise RemotingError(ResponseCode.NO_PERMISSION,
                                f"subscription group no permission, {name}")
        return group

    def update(self, group: dict[str, Any]) -> dict[str, Any]:
        merged = default_group(group["groupName"]) | self.table.get(group["groupName"], {}) | group
        self.table[group["groupName"]] = merged
        self.data_version.next()
        self.dirty = True
        return merged

    def delete(self, name: str) -> bool:
        if self.table.pop(name, None) is None:
            return False
        self.data_version.next()
        self.dirty = True
        return True
