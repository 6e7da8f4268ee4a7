"""Generated protobuf and gRPC modules of apache.rocketmq.v2 (python -m rmqnode.grpc.regen); do not edit."""
