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

    async def masters(self, cluster: str | None = None) -> dict[str, str]:
        """Broker name -> master address, of one cluster or of all."""
        info = await self.namesrv.cluster_info()
        names = info.get("clusterAddrTable", {}).get(cluster, []) if cluster else \
            [n for ns in info.get("clusterAddrTable", {}).values() for n in ns]
        if cluster and not names:
            raise ValueError(f"no cluster named {cluster!r} (see: rmqctl cluster list)")
        out = {}
        for name in names:
            addr = info.get("brokerAddrTable", {}).get(name, {}).get("brokerAddrs", {}).get("0")
            if addr:
                out[name] = addr
        return out

    async def topic_masters(self, topic: str) -> dict[str, str]:
        return (await topic_route(self.namesrv, topic)).addrs

    async def call(self, addr: str, code: int, fields: dict[str, Any] | None = None,
                   body: bytes = b"") -> RemotingCommand:
        resp = await self.remoting.invoke(addr, RemotingCommand.request(code, fields, body),
                                          self.namesrv.timeout)
        if resp.code != ResponseCode.SUCCESS:
            raise RemotingError(resp.code, f"{addr}: {resp.remark or ''}")
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
