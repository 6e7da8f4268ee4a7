"""Status codes of the gRPC protocol and the one error type its handlers raise.

Business errors never travel as gRPC errors: every response carries a `Status{code, message}`
(the clients raise "response is illegal" on a missing or zero code). A handler raises
`GrpcError(Code.X, "...")`; the service wrapper (service.py) catches it and puts `status(...)`
into the response. gRPC-level errors are kept for unimplemented methods and broken streams.
"""

from __future__ import annotations

from enum import IntEnum

from rmqnode.errors import RemotingError
from rmqnode.grpc.v2 import definition_pb2
from rmqnode.net.codes import ResponseCode


class Code(IntEnum):
    """`apache.rocketmq.v2.Code` (definition.proto), named for use in handlers; a test checks
    it against the generated enum."""

    CODE_UNSPECIFIED = 0
    OK = 20000
    MULTIPLE_RESULTS = 30000
    BAD_REQUEST = 40000
    ILLEGAL_ACCESS_POINT = 40001
    ILLEGAL_TOPIC = 40002
    ILLEGAL_CONSUMER_GROUP = 40003
    ILLEGAL_MESSAGE_TAG = 40004
    ILLEGAL_MESSAGE_KEY = 40005
    ILLEGAL_MESSAGE_GROUP = 40006
    ILLEGAL_MESSAGE_PROPERTY_KEY = 40007
    INVALID_TRANSACTION_ID = 40008
    ILLEGAL_MESSAGE_ID = 40009
    ILLEGAL_FILTER_EXPRESSION = 40010
    ILLEGAL_INVISIBLE_TIME = 40011
    ILLEGAL_DELIVERY_TIME = 40012
    INVALID_RECEIPT_HANDLE = 40013
    MESSAGE_PROPERTY_CONFLICT_WITH_TYPE = 40014
    UNRECOGNIZED_CLIENT_TYPE = 40015
    MESSAGE_CORRUPTED = 40016
    CLIENT_ID_REQUIRED = 40017
    ILLEGAL_POLLING_TIME = 40018
    ILLEGAL_OFFSET = 40019
    ILLEGAL_LITE_TOPIC = 40020
    UNAUTHORIZED = 40100
    PAYMENT_REQUIRED = 40200
    FORBIDDEN = 40300
    NOT_FOUND = 40400
    MESSAGE_NOT_FOUND = 40401
    TOPIC_NOT_FOUND = 40402
    CONSUMER_GROUP_NOT_FOUND = 40403
    OFFSET_NOT_FOUND = 40404
    REQUEST_TIMEOUT = 40800
    PAYLOAD_TOO_LARGE = 41300
    MESSAGE_BODY_TOO_LARGE = 41301
    MESSAGE_BODY_EMPTY = 41302
    PRECONDITION_FAILED = 42800
    TOO_MANY_REQUESTS = 42900
    LITE_TOPIC_QUOTA_EXCEEDED = 42901
    LITE_SUBSCRIPTION_QUOTA_EXCEEDED = 42902
    REQUEST_HEADER_FIELDS_TOO_LARGE = 43100
    MESSAGE_PROPERTIES_TOO_LARGE = 43101
    INTERNAL_ERROR = 50000
    INTERNAL_SERVER_ERROR = 50001
    HA_NOT_AVAILABLE = 50002
    NOT_IMPLEMENTED = 50100
    PROXY_TIMEOUT = 50400
    MASTER_PERSISTENCE_TIMEOUT = 50401
    SLAVE_PERSISTENCE_TIMEOUT = 50402
    UNSUPPORTED = 50500
    VERSION_UNSUPPORTED = 50501
    VERIFY_FIFO_MESSAGE_UNSUPPORTED = 50502
    FAILED_TO_CONSUME_MESSAGE = 60000


class GrpcError(Exception):
    """A request refused with a protocol code; the client sees `message` in the Status."""

    def __init__(self, code: Code, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def __str__(self) -> str:
        return f"{self.code.name} ({int(self.code)}): {self.message}"

    def to_status(self) -> definition_pb2.Status:
        return status(self.code, self.message)


def status(code: Code, message: str | None = None) -> definition_pb2.Status:
    """A `Status`; the message defaults to the code's name, as the Java proxy writes "OK"."""
    return definition_pb2.Status(code=int(code), message=code.name if message is None else message)


OK = status(Code.OK)  # shared by every successful answer: callers must not mutate it

# The Java proxy's translation of remoting response codes (ResponseCode -> Code); any code
# not listed is INTERNAL_SERVER_ERROR with the broker's remark.
_FROM_REMOTING: dict[int, Code] = {
    ResponseCode.SUCCESS: Code.OK,
    ResponseCode.SYSTEM_BUSY: Code.TOO_MANY_REQUESTS,
    ResponseCode.REQUEST_CODE_NOT_SUPPORTED: Code.NOT_IMPLEMENTED,
    ResponseCode.SUBSCRIPTION_GROUP_NOT_EXIST: Code.CONSUMER_GROUP_NOT_FOUND,
    ResponseCode.TOPIC_NOT_EXIST: Code.TOPIC_NOT_FOUND,
    ResponseCode.NO_PERMISSION: Code.FORBIDDEN,  # ours: the proxy's "no writable queue" code
    ResponseCode.FLUSH_DISK_TIMEOUT: Code.MASTER_PERSISTENCE_TIMEOUT,
    ResponseCode.FLUSH_SLAVE_TIMEOUT: Code.SLAVE_PERSISTENCE_TIMEOUT,
    ResponseCode.SLAVE_NOT_AVAILABLE: Code.HA_NOT_AVAILABLE,
}


def from_remoting(code: int) -> Code:
    """The protocol code for a broker processor's response code (spec §2.1)."""
    return _FROM_REMOTING.get(code, Code.INTERNAL_SERVER_ERROR)


def from_remoting_error(exc: RemotingError) -> GrpcError:
    """A broker processor's RemotingError as the GrpcError the proxy would answer."""
    return GrpcError(from_remoting(exc.code), exc.remark)
