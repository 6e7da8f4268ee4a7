"""Master/slave replication of the CommitLog (RocketMQ 4.9.8's HA), wire-compatible with Java:
the stream's codec (protocol), the master's listener and pushes (master), the slave's client
(slave), and what the broker uses of them (service)."""
