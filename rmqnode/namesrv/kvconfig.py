"""The name server's namespaced key/value store (KVConfigManager), persisted as kvConfig.json.

The file has Java's shape, `{"configTable":{namespace:{key:value}}}`, so a name server
directory moves between Java RocketMQ and rmqnode either way.
"""

from __future__ import annotations

from rmqnode import log
from rmqnode.atomicfile import load_with_fallback, write_atomic
from rmqnode.net import fastjson
from rmqnode.validation import quote

ORDER_TOPIC_CONFIG = "ORDER_TOPIC_CONFIG"

_log = log.get("rmqnode.namesrv")


class KVConfigManager:
    def __init__(self, path: str | None) -> None:
        self.path = path
        self.table: dict[str, dict[str, str]] = {}

    def load(self) -> None:
        if not self.path:
            return
        data = load_with_fallback(self.path, fastjson.loads)
        if data is not None:
            table = data.get("configTable") or {}
            self.table = {ns: {str(k): str(v) for k, v in kv.items()} for ns, kv in table.items()}

    def _persist(self) -> None:
        if self.path:
            write_atomic(self.path, fastjson.dumpb({"configTable": self.table}))

    def put(self, namespace: str, key: str, value: str) -> None:
        self.table.setdefault(namespace, {})[key] = value
        _log.info("kv.put", namespace=namespace, key=key, value=quote(value))  # may be 64 KiB
        self._persist()

    def get(self, namespace: str, key: str) -> str | None:
        return self.table.get(namespace, {}).get(key)

    def delete(self, namespace: str, key: str) -> None:
        kv = self.table.get(namespace)
        if kv is not None and kv.pop(key, None) is not None:
            if not kv:
                del self.table[namespace]
            _log.info("kv.delete", namespace=namespace, key=key)
            self._persist()

    def namespace(self, namespace: str) -> dict[str, str]:
        return dict(self.table.get(namespace, {}))
