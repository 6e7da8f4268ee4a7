"""Name server request handlers: one table of request code -> handler (DefaultRequestProcessor).

Remarks and codes follow the Java name server so that clients and mqadmin print what their
users already know.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rmqnode import log
from rmqnode.config import ConfigError, read_properties, write_properties
from rmqnode.errors import FAQ, RemotingError
from rmqnode.net import fastjson
from rmqnode.net.codec import RemotingCommand
from rmqnode.net.codes import RequestCode, ResponseCode
from rmqnode.net.connection import Connection, Handler
from rmqnode.namesrv import fields
from rmqnode.namesrv.kvconfig import ORDER_TOPIC_CONFIG
from rmqnode.validation import quote

if TYPE_CHECKING:
    from rmqnode.namesrv.server import NameServer

_log = log.get("rmqnode.namesrv")

# Version ordinal: from V4_9_4 clients get standard JSON (quoted broker ids) in routes.
V4_9_4 = 401


def _kv_names(cmd: RemotingCommand) -> tuple[str, str]:
    """The namespace and key every KV request names."""
    return (fields.kv_string(cmd.field("namespace"), "namespace"),
            fields.kv_string(cmd.field("key"), "key"))


def _ok(cmd: RemotingCommand, body: bytes = b"", ext: dict[str, object] | None = None
        ) -> RemotingCommand:
    return cmd.response(ResponseCode.SUCCESS, None, ext, body)


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
        reg = fields.registration(cmd)  # all of it, before any table is touched
        ha_addr, master_addr = self.ns.routes.register_broker(
            cluster=reg.cluster, broker_addr=reg.broker_addr, broker_name=reg.broker_name,
            broker_id=reg.broker_id, ha_server_addr=reg.ha_server_addr,
            data_version=reg.data_version, topic_configs=reg.topic_configs, channel=conn,
            now=self.ns.clock(), timeout=reg.timeout)
        _log.debug("broker.registered", name=reg.broker_name, addr=reg.broker_addr,
                   peer=conn.peer)
        order = self.ns.kv.namespace(ORDER_TOPIC_CONFIG)
        body_out = fastjson.dumpb({"table": order}) if order else b""
        return _ok(cmd, body_out, {"haServerAddr": ha_addr, "masterAddr": master_addr})

    def unregister_broker(self, cmd: RemotingCommand, conn: Connection) -> RemotingCommand:
        addr = fields.address(cmd.field("brokerAddr"), "brokerAddr")
        name = fields.label(cmd.field("brokerName"), "brokerName")
        fields.label(cmd.field("clusterName"), "clusterName")  # required, as in Java
        self.ns.routes.unregister_broker(addr, name, cmd.int_field("brokerId"))
        _log.info("broker.unregistered", addr=addr, name=name)
        return cmd.response()

    def query_data_version(self, cmd: RemotingCommand, conn: Connection) -> RemotingCommand:
        addr = fields.address(cmd.field("brokerAddr"), "brokerAddr")
        version = fields.data_version(fields.json_body(cmd, "dataVersion"))
        changed = self.ns.routes.data_version_changed(addr, version, self.ns.clock())
        live = self.ns.routes.broker_live_table.get(addr)
        body = fastjson.dumpb(live.data_version) if live is not None else b""
        return _ok(cmd, body, {"changed": changed})

    def wipe_write_perm(self, cmd: RemotingCommand, conn: Connection) -> RemotingCommand:
        count = self.ns.routes.change_write_perm(
            fields.label(cmd.field("brokerName"), "brokerName"), grant=False)
        return _ok(cmd, ext={"wipeTopicCount": count})

    def add_write_perm(self, cmd: RemotingCommand, conn: Connection) -> RemotingCommand:
        count = self.ns.routes.change_write_perm(
            fields.label(cmd.field("brokerName"), "brokerName"), grant=True)
        return _ok(cmd, ext={"addTopicCount": count})

    # -- routes and topics -------------------------------------------------------------------

    def get_route(self, cmd: RemotingCommand, conn: Connection) -> RemotingCommand:
        topic = fields.topic(cmd.field("topic"))
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
        topics = self.ns.routes.topics_of_cluster(fields.label(cmd.field("cluster"), "cluster"))
        return cmd.response(body=fastjson.dumpb({"topicList": topics}))

    def get_system_topics(self, cmd: RemotingCommand, conn: Connection) -> RemotingCommand:
        topics, addr = self.ns.routes.system_topics()
        body: dict[str, object] = {"topicList": topics}
        if addr:
            body = {"brokerAddr": addr, "topicList": topics}
        return cmd.response(body=fastjson.dumpb(body))

    def delete_topic(self, cmd: RemotingCommand, conn: Connection) -> RemotingCommand:
        topic = fields.topic(cmd.field("topic"))
        cluster = cmd.field("clusterName")
        if cluster:
            fields.label(cluster, "clusterName")
        self.ns.routes.delete_topic(topic, cluster)
        _log.info("topic.deleted", topic=topic, cluster=cluster or "*")
        return cmd.response()

    # -- KV config ---------------------------------------------------------------------------

    def put_kv(self, cmd: RemotingCommand, conn: Connection) -> RemotingCommand:
        namespace, key = _kv_names(cmd)
        value = fields.kv_string(cmd.field("value"), "value", fields.KV_VALUE_MAX_LENGTH,
                                 one_line=False)
        self.ns.kv.put(namespace, key, value)
        return cmd.response()

    def get_kv(self, cmd: RemotingCommand, conn: Connection) -> RemotingCommand:
        namespace, key = _kv_names(cmd)
        value = self.ns.kv.get(namespace, key)
        if value is None:
            return cmd.response(ResponseCode.QUERY_NOT_FOUND,
                                f"No config item, Namespace: {namespace} Key: {key}")
        return _ok(cmd, ext={"value": value})

    def delete_kv(self, cmd: RemotingCommand, conn: Connection) -> RemotingCommand:
        self.ns.kv.delete(*_kv_names(cmd))
        return cmd.response()

    def get_kv_list(self, cmd: RemotingCommand, conn: Connection) -> RemotingCommand:
        namespace = fields.kv_string(cmd.field("namespace"), "namespace")
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
        try:
            self.ns.update_config(props)
        except ConfigError as exc:
            raise RemotingError(ResponseCode.SYSTEM_ERROR, quote(exc, 200)) from None
        return cmd.response()
