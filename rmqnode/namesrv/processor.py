"""Name server request handlers: one table of request code -> handler (DefaultRequestProcessor).

Remarks and codes follow the Java name server so that clients and mqadmin print what their
users already know.
"""

from __future__ import annotations

import zlib
from typing import TYPE_CHECKING

from rmqnode import log
from rmqnode.config import read_properties, write_properties
from rmqnode.errors import FAQ, RemotingError
from rmqnode.net import fastjson
from rmqnode.net.codec import RemotingCommand
from rmqnode.net.codes import RequestCode, ResponseCode
from rmqnode.net.connection import Connection, Handler
from rmqnode.namesrv.kvconfig import ORDER_TOPIC_CONFIG

if TYPE_CHECKING:
    from rmqnode.namesrv.server import NameServer

_log = log.get("rmqnode.namesrv")

# Version ordinals: V3_0_11 is the first whose REGISTER_BROKER body is a RegisterBrokerBody;
# from V4_9_4 clients get standard JSON (quoted broker ids) in routes.
V3_0_11 = 37
V4_9_4 = 401


def _ok(cmd: RemotingCommand, body: bytes = b"", fields: dict[str, object] | None = None
        ) -> RemotingCommand:
    return cmd.response(ResponseCode.SUCCESS, None, fields, body)


class NamesrvProcessor:
    def __init__(self, ns: NameServer) -> None:
        self.ns = ns

    def table(self) -> dict[int, Handler]:
        rc = RequestCode
        return {
            rc.REGISTER_BROKER: self.register_broker,
            rc.UNREGISTER_BROKER: self.unregister_broker,
            rc.QUERY_DATA_VERSION: self.query_data_version,
            rc.GET_ROUTEINFO_BY_TOPIC: self.get_route,
            rc.GET_BROKER_CLUSTER_INFO: self.get_cluster_info,
            rc.GET_ALL_TOPIC_LIST_FROM_NAMESERVER: self.get_all_topics,
            rc.GET_TOPICS_BY_CLUSTER: self.get_topics_by_cluster,
            rc.GET_SYSTEM_TOPIC_LIST_FROM_NS: self.get_system_topics,
            rc.DELETE_TOPIC_IN_NAMESRV: self.delete_topic,
            rc.WIPE_WRITE_PERM_OF_BROKER: self.wipe_write_perm,
            rc.ADD_WRITE_PERM_OF_BROKER: self.add_write_perm,
            rc.PUT_KV_CONFIG: self.put_kv,
            rc.GET_KV_CONFIG: self.get_kv,
            rc.DELETE_KV_CONFIG: self.delete_kv,
            rc.GET_KVLIST_BY_NAMESPACE: self.get_kv_list,
            rc.GET_NAMESRV_CONFIG: self.get_config,
            rc.UPDATE_NAMESRV_CONFIG: self.update_config,
        }

    # -- brokers -----------------------------------------------------------------------------

    def register_broker(self, cmd: RemotingCommand, conn: Connection) -> RemotingCommand:
        crc = cmd.int_field("bodyCrc32", 0)
        if crc and crc != zlib.crc32(cmd.body) & 0x7FFFFFFF:
            raise RemotingError(ResponseCode.SYSTEM_ERROR, "crc32 not match")
        if cmd.bool_field("compressed"):
            raise RemotingError(ResponseCode.SYSTEM_ERROR,
                                "compressed RegisterBrokerBody is not supported; "
                                "set compressedRegister=false on the broker")
        wrapper: dict = {}
        if cmd.body:
            try:
                body = fastjson.loads(cmd.body)
            except ValueError as exc:
                raise RemotingError(ResponseCode.SYSTEM_ERROR,
                                    f"register body is not valid JSON: {exc}") from None
            # Brokers older than V3_0_11 send the bare TopicConfigSerializeWrapper.
            if cmd.version >= V3_0_11:
                wrapper = body.get("topicConfigSerializeWrapper") or {}
            else:
                wrapper = body
        timeout = cmd.int_field("heartbeatTimeoutMillis", 0) / 1000.0
        name = cmd.require("brokerName")
        addr = cmd.require("brokerAddr")
        ha_addr, master_addr = self.ns.routes.register_broker(
            cluster=cmd.require("clusterName"), broker_addr=addr, broker_name=name,
            broker_id=cmd.int_field("brokerId"), ha_server_addr=cmd.field("haServerAddr") or "",
            data_version=wrapper.get("dataVersion") or {},
            topic_configs=wrapper.get("topicConfigTable") if cmd.body else None,
            channel=conn, now=self.ns.clock(), timeout=timeout or None)
        _log.debug("broker.registered", name=name, addr=addr, peer=conn.peer)
        order = self.ns.kv.namespace(ORDER_TOPIC_CONFIG)
        body_out = fastjson.dumpb({"table": order}) if order else b""
        return _ok(cmd, body_out, {"haServerAddr": ha_addr, "masterAddr": master_addr})

    def unregister_broker(self, cmd: RemotingCommand, conn: Connection) -> RemotingCommand:
        addr = cmd.require("brokerAddr")
        self.ns.routes.unregister_broker(cmd.require("clusterName"), addr,
                                         cmd.require("brokerName"), cmd.int_field("brokerId"))
        _log.info("broker.unregistered", addr=addr, name=cmd.field("brokerName"))
        return cmd.response()

    def query_data_version(self, cmd: RemotingCommand, conn: Connection) -> RemotingCommand:
        version = fastjson.loads(cmd.body) if cmd.body else {}
        changed = self.ns.routes.data_version_changed(cmd.require("brokerAddr"), version,
                                                      self.ns.clock())
        live = self.ns.routes.broker_live_table.get(cmd.require("brokerAddr"))
        body = fastjson.dumpb(live.data_version) if live is not None else b""
        return _ok(cmd, body, {"changed": changed})

    def wipe_write_perm(self, cmd: RemotingCommand, conn: Connection) -> RemotingCommand:
        count = self.ns.routes.change_write_perm(cmd.require("brokerName"), grant=False)
        return _ok(cmd, fields={"wipeTopicCount": count})

    def add_write_perm(self, cmd: RemotingCommand, conn: Connection) -> RemotingCommand:
        count = self.ns.routes.change_write_perm(cmd.require("brokerName"), grant=True)
        return _ok(cmd, fields={"addTopicCount": count})

    # -- routes and topics -------------------------------------------------------------------

    def get_route(self, cmd: RemotingCommand, conn: Connection) -> RemotingCommand:
        topic = cmd.require("topic")
        order_conf = (self.ns.kv.get(ORDER_TOPIC_CONFIG, topic)
                      if self.ns.config.orderMessageEnable else None)
        standard = cmd.version >= V4_9_4 or cmd.bool_field("acceptStandardJsonOnly")
        route = self.ns.routes.topic_route(topic, quoted_ids=standard,
                                           order_topic_conf=order_conf)
        if route is None:
            return cmd.response(ResponseCode.TOPIC_NOT_EXIST,
                                f"No topic route info in name server for the topic: {topic}"
                                + FAQ)
        # Java's BrowserCompatible feature (used for standard JSON) escapes non-ASCII.
        return cmd.response(body=fastjson.dumpb(route, ascii_only=standard))

    def get_cluster_info(self, cmd: RemotingCommand, conn: Connection) -> RemotingCommand:
        return cmd.response(body=fastjson.dumpb(self.ns.routes.cluster_info()))

    def get_all_topics(self, cmd: RemotingCommand, conn: Connection) -> RemotingCommand:
        return cmd.response(body=fastjson.dumpb({"topicList": self.ns.routes.all_topics()}))

    def get_topics_by_cluster(self, cmd: RemotingCommand, conn: Connection) -> RemotingCommand:
        topics = self.ns.routes.topics_of_cluster(cmd.require("cluster"))
        return cmd.response(body=fastjson.dumpb({"topicList": topics}))

    def get_system_topics(self, cmd: RemotingCommand, conn: Connection) -> RemotingCommand:
        topics, addr = self.ns.routes.system_topics()
        body: dict[str, object] = {"topicList": topics}
        if addr:
            body = {"brokerAddr": addr, "topicList": topics}
        return cmd.response(body=fastjson.dumpb(body))

    def delete_topic(self, cmd: RemotingCommand, conn: Connection) -> RemotingCommand:
        topic = cmd.require("topic")
        self.ns.routes.delete_topic(topic, cmd.field("clusterName"))
        _log.info("topic.deleted", topic=topic, cluster=cmd.field("clusterName") or "*")
        return cmd.response()

    # -- KV config ---------------------------------------------------------------------------

    def put_kv(self, cmd: RemotingCommand, conn: Connection) -> RemotingCommand:
        self.ns.kv.put(cmd.require("namespace"), cmd.require("key"), cmd.require("value"))
        return cmd.response()

    def get_kv(self, cmd: RemotingCommand, conn: Connection) -> RemotingCommand:
        namespace, key = cmd.require("namespace"), cmd.require("key")
        value = self.ns.kv.get(namespace, key)
        if value is None:
            return cmd.response(ResponseCode.QUERY_NOT_FOUND,
                                f"No config item, Namespace: {namespace} Key: {key}")
        return _ok(cmd, fields={"value": value})

    def delete_kv(self, cmd: RemotingCommand, conn: Connection) -> RemotingCommand:
        self.ns.kv.delete(cmd.require("namespace"), cmd.require("key"))
        return cmd.response()

    def get_kv_list(self, cmd: RemotingCommand, conn: Connection) -> RemotingCommand:
        namespace = cmd.require("namespace")
        table = self.ns.kv.namespace(namespace)
        if not table:
            return cmd.response(ResponseCode.QUERY_NOT_FOUND,
                                f"No config item, Namespace: {namespace}")
        return cmd.response(body=fastjson.dumpb({"table": table}))

    # -- own config --------------------------------------------------------------------------

    def get_config(self, cmd: RemotingCommand, conn: Connection) -> RemotingCommand:
        return cmd.response(body=write_properties(self.ns.config).encode())

    def update_config(self, cmd: RemotingCommand, conn: Connection) -> RemotingCommand:
        try:
            props = read_properties(cmd.body.decode("utf-8"))
        except UnicodeDecodeError:
            raise RemotingError(ResponseCode.SYSTEM_ERROR, "string2Properties error") from None
        blocked = set(self.ns.config.configBlackList.split(";"))
        if blocked & set(props):
            return cmd.response(ResponseCode.NO_PERMISSION, "Can not update config in black list.")
        self.ns.update_config(props)
        return cmd.response()
