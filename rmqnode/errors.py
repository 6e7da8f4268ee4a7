"""Errors that carry a RocketMQ response code and remark.

One hierarchy for the whole product: a processor raises, the transport turns the error into a
response with the same code and remark a Java broker would send, and the CLI turns it into one
line on stderr and an exit code.
"""

from __future__ import annotations

from rmqnode.net.codes import response_name

# The hint Java appends to many remarks (FAQUrl.suggestTodo).
FAQ = "\nSee http://rocketmq.apache.org/docs/faq/ for further details."


class RemotingError(Exception):
    """A request failed with a RocketMQ response code; `remark` is what the peer is told."""

    def __init__(self, code: int, remark: str, request: int | None = None) -> None:
        super().__init__(remark)
        self.code = code
        self.remark = remark
        self.request = request  # the request code answered, where it names the response

    @property
    def name(self) -> str:
        return response_name(self.code, self.request)

    def __str__(self) -> str:
        return f"{self.name} ({self.code}): {self.remark}"


class FrameError(Exception):
    """Bytes on a connection that are not a valid remoting frame; the connection is closed."""


class RemotingTimeout(Exception):
    """No response arrived within the request's timeout."""


class ConnectionLost(Exception):
    """The connection closed while a request was waiting for its response."""

