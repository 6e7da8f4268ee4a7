"""Admin calls that span brokers (what mqadmin's DefaultMQAdminExt does): find the masters of
a cluster or a topic, send each the same request, gather the answers."""

from __future__ import annotations

from typing import Any

from rmqnode.errors import RemotingError
from rmqnode.net import fastjson
from rmqnode.net.codec import RemotingCommand
from rmqnode.net.codes import PERM_READ, PERM_WRITE, RequestCode, ResponseCode
from rmqctl.client.namesrv import NameServerClient
from rmqctl.client.producer import topic_route


class Admin:
    def __init__(self, namesrv: NameServerClient) -> None:
        self.namesrv = namesrv
        self.remoting = namesrv.remoting

    async def _broker_addrs(self, cluster: str | None) -> dict[str, dict[str, str]]:
        """Broker name -> {broker id: address}, of one cluster or of all."""
        info = await self.namesrv.cluster_info()
        names = info.get("clusterAddrTable", {}).get(cluster, []) if cluster else \
            [n for ns in info.get("clusterAddrTable", {}).values() for n in ns]
        if cluster and not names:
            raise ValueError(f"no cluster named {cluster!r} (see: rmqctl cluster list)")
        table = info.get("brokerAddrTable", {})
        return {name: {str(i): a for i, a in table.get(name, {}).get("brokerAddrs", {}).items()}
                for name in names}

    async def masters(self, cluster: str | None = None) -> dict[str, str]:
        """Broker name -> master address, of one cluster or of all."""
        return {name: addrs["0"] for name, addrs in (await self._broker_addrs(cluster)).items()
                if addrs.get("0")}

    async def brokers(self, cluster: str | None = None) -> dict[str, str]:
        """Masters and slaves, of one cluster or of all: what mqadmin's ACL changes go to,
        since each broker keeps its own plain_acl.yml. A slave is named `name#id`."""
        return {name if i == "0" else f"{name}#{i}": addr
                for name, addrs in (await self._broker_addrs(cluster)).items()
                for i, addr in sorted(addrs.items())}

    async def topic_masters(self, topic: str) -> dict[str, str]:
        return (await topic_route(self.namesrv, topic)).addrs

    async def call(self, addr: str, code: int, fields: dict[str, Any] | None = None,
                   body: bytes = b"") -> RemotingCommand:
        resp = await self.remoting.invoke(addr, RemotingCommand.request(code, fields, body),
                                          self.namesrv.timeout)
        if resp.code != ResponseCode.SUCCESS:
            raise RemotingError(resp.code, f"{addr}: {resp.remark or ''}", code)
        return resp

    async def call_json(self, addr: str, code: int, fields: dict[str, Any] | None = None,
                        body: bytes = b"") -> Any:
        resp = await self.call(addr, code, fields, body)
        return fastjson.loads(resp.body) if resp.body else {}

    async def create_topic(self, addr: str, topic: str, queues: int,
                           perm: int = PERM_READ | PERM_WRITE,
                           order: bool = False) -> None:
        """UPDATE_AND_CREATE_TOPIC on one broker, as `mqadmin updateTopic` sends it (the same
        request updates an existing topic)."""
        await self.call(addr, RequestCode.UPDATE_AND_CREATE_TOPIC, {
            "topic": topic, "defaultTopic": "TBW102", "readQueueNums": queues,
            "writeQueueNums": queues, "perm": perm, "topicFilterType": "SINGLE_TAG",
            "topicSysFlag": 0, "order": order})

    async def queue_tables(self, masters: dict[str, str], code: int,
                           fields: dict[str, Any]) -> list[tuple[str, dict[str, Any], Any]]:
        """Ask each broker for a MessageQueue-keyed offsetTable (topic stats, consume stats,
        reset results): (broker name, queue as a dict, value) rows, brokers in name order."""
        rows = []
        for broker_name, addr in sorted(masters.items()):
            data = await self.call_json(addr, code, fields)
            for key, value in data.get("offsetTable", {}).items():
                rows.append((broker_name, key.as_dict(), value))
        return rows

    async def members(self, addr: str, group: str) -> list[dict[str, Any]]:
        """The group's live members as one broker sees them (GET_CONSUMER_CONNECTION_LIST):
        clientId, clientAddr, language, version; none when nobody is online there."""
        try:
            data = await self.call_json(addr, RequestCode.GET_CONSUMER_CONNECTION_LIST,
                                        {"consumerGroup": group})
        except RemotingError as exc:
            if exc.code == ResponseCode.CONSUMER_NOT_ONLINE:
                return []
            raise
        return data.get("connectionSet", [])

    # -- plain ACL (what mqadmin's updateAclConfig, deleteAclConfig, updateGlobalWhiteAddr and
    # clusterAclConfigVersion send) --------------------------------------------------------

    async def acl_config(self, addr: str) -> dict[str, Any]:
        """The broker's accounts and global white addresses (GET_BROKER_CLUSTER_ACL_CONFIG):
        {"globalWhiteAddrs": [...], "plainAccessConfigs": [PlainAccessConfig, ...]}."""
        data = await self.call_json(addr, RequestCode.GET_BROKER_CLUSTER_ACL_CONFIG)
        return {"globalWhiteAddrs": list(data.get("globalWhiteAddrs") or []),
                "plainAccessConfigs": list(data.get("plainAccessConfigs") or [])}

    async def acl_update(self, addr: str, account: dict[str, Any]) -> None:
        """Create or update one account (a PlainAccessConfig: accessKey, secretKey, admin,
        whiteRemoteAddress, defaultTopicPerm, defaultGroupPerm, topicPerms, groupPerms), in
        CreateAccessConfigRequestHeader's fields."""
        fields = dict(account)
        for name in ("topicPerms", "groupPerms"):
            if fields.get(name) is not None:
                fields[name] = ",".join(fields[name])
        await self.call(addr, RequestCode.UPDATE_AND_CREATE_ACL_CONFIG, fields)

    async def acl_delete(self, addr: str, access_key: str) -> None:
        await self.call(addr, RequestCode.DELETE_ACL_CONFIG, {"accessKey": access_key})

    async def acl_white_addrs(self, addr: str, white_addrs: list[str],
                              acl_file: str | None = None) -> None:
        await self.call(addr, RequestCode.UPDATE_GLOBAL_WHITE_ADDRS_CONFIG,
                        {"globalWhiteAddrs": ",".join(white_addrs), "aclFileFullPath": acl_file})

    async def acl_version(self, addr: str) -> dict[str, str]:
        """GET_BROKER_CLUSTER_ACL_INFO's header: clusterName, brokerName, brokerAddr,
        version and allAclFileVersion (DataVersion JSON)."""
        return dict((await self.call(addr, RequestCode.GET_BROKER_CLUSTER_ACL_INFO)).ext_fields
                    or {})

    async def committed(self, addr: str, group: str, topic: str, queue_id: int) -> int | None:
        """The group's committed offset of one queue, None when it never committed one
        (setZeroIfNotFound=false, as 5.x asks; a 4.9.8 broker ignores it and answers 0 while
        the queue's first message is still stored)."""
        resp = await self.remoting.invoke(addr, RemotingCommand.request(
            RequestCode.QUERY_CONSUMER_OFFSET, {"consumerGroup": group, "topic": topic,
                                                "queueId": queue_id,
                                                "setZeroIfNotFound": False}),
            self.namesrv.timeout)
        if resp.code == ResponseCode.QUERY_NOT_FOUND:
            return None
        if resp.code != ResponseCode.SUCCESS:
            raise RemotingError(resp.code, f"{addr}: {resp.remark or ''}")
        return int(resp.field("offset") or 0)

    async def queue_offset(self, addr: str, code: int, topic: str, queue_id: int,
                           **extra: object) -> int:
        """GET_MIN_OFFSET, GET_MAX_OFFSET or SEARCH_OFFSET_BY_TIMESTAMP (timestamp=...) of
        one queue."""
        resp = await self.call(addr, code, {"topic": topic, "queueId": queue_id, **extra})
        return int(resp.field("offset") or 0)
