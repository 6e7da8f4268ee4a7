"""`rmqctl request`: send a request message and print its reply (RocketMQ request-reply)."""

from __future__ import annotations

import os
import sys

import click

from rmqctl.client.namesrv import NameServerClient
from rmqctl.client.producer import Producer
from rmqctl.client.requester import Requester
from rmqctl.render import BODY_FORMATS, body_text, message_row
from rmqctl.context import Ctx, pass_ctx
from rmqctl.output import emit_object
from rmqnode.message import MessageExt


@click.command()
@click.argument("topic")
@click.argument("body")
@click.option("--tags", help="The request's tag (one; consumers filter on it).")
@click.option("--keys", help="Business keys, space-separated (indexed for lookups).")
@click.option("--body", "body_format", type=click.Choice(BODY_FORMATS), default="auto",
              show_default=True, help="How to show the reply's body (table, json, ndjson).")
@pass_ctx
def request(ctx: Ctx, topic: str, body: str, tags: str | None, keys: str | None,
            body_format: str) -> None:
    """Send BODY to TOPIC as a request and print the reply a consumer sends back (`rmqctl
    consume --reply`, or a Java replier using MessageUtil.createReplyMessage), as Java's
    DefaultMQProducer.request does. The reply must come within --timeout seconds of the
    start, else the exit code is 4.

    \b
    Prints the reply's body (-o raw: its bytes as they are), or with -o json / ndjson the
    whole reply message, its properties holding CORRELATION_ID.

    \b
    Examples:
      rmqctl request Prices 'AAPL'
      rmqctl --timeout 30 -o json request Orders '{"id": 7}' --keys order-7
    """
    async def work(ns: NameServerClient) -> MessageExt:
        requester = Requester(Producer(ns.remoting, ns, timeout=ctx.timeout))
        return await requester.request(topic, os.fsencode(body), ctx.timeout, tags=tags,
                                       keys=keys.split() if keys else None)

    reply = ctx.run(work)
    if ctx.output in ("json", "ndjson"):
        emit_object(message_row(reply, body_format), ctx.output)
    elif ctx.output == "raw":
        sys.stdout.buffer.write(reply.body)
    else:
        click.echo(body_text(reply.body, body_format) or "")
