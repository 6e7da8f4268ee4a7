"""rmqctl's client library: name server lookups, admin calls, and (later) producer/consumer.

Usable from Python code as well as by the commands; everything speaks the remoting protocol
only, so it works against rmqnode and Java RocketMQ alike."""
