"""RocketMQ's store: formats (records.py) and the engine (store.py and the modules it uses)."""
