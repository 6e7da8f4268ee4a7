"""`rmqctl message ...`: find messages by id, key or offset."""

from __future__ import annotations

import time

import click

from rmqnode.message import decode_offset_msg_id
from rmqnode.net.codec import RemotingCommand
from rmqnode.net.codes import RequestCode
from rmqctl.client.admin import Admin
from rmqctl.client.consumer import parse_messages
from rmqctl.commands.store import BODY_FORMATS, message_row
from rmqctl.context import Ctx, pass_ctx
from rmqctl.output import emit_object, emit_rows


@click.group()
def message() -> None:
    """Messages: get by id or offset, query by key."""


async def _by_key(admin: Admin, topic: str, key: str, unique: bool, limit: int) -> list:
    found = []
    for addr in (await admin.topic_masters(topic)).values():
        fields = {"topic": topic, "key": key, "maxNum": limit, "beginTimestamp": 0,
                  "endTimestamp": int(time.time() * 1000) + 60_000}
        if unique:
            fields["_UNIQUE_KEY_QUERY"] = True
        resp = await admin.remoting.invoke(addr, RemotingCommand.request(
            RequestCode.QUERY_MESSAGE, fields), admin.namesrv.timeout)
        if resp.code == 0:
            found += [m for m in parse_messages(resp.body)
                      if (m.msg_id == key if unique else key in m.keys)]
    return found


@message.command("get")
@click.argument("msg_id", required=False)
@click.option("-t", "--topic", help="Needed when MSG_ID is a client id (UNIQ_KEY).")
@click.option("--offset", type=int, help="A commit log offset instead of an id (with -b).")
@click.option("-b", "--broker", "broker_addr", help="The broker holding --offset.")
@click.option("--body", "body_format", type=click.Choice(BODY_FORMATS), default="auto",
              show_default=True)
@pass_ctx
def message_get(ctx: Ctx, msg_id: str | None, topic: str | None, offset: int | None,
                broker_addr: str | None, body_format: str) -> None:
    """Show one message: by offset id (the broker's), by client id with -t, or by --offset.

    \b
    Examples:
      rmqctl message get 7F00000100002A9F0000000000001234
      rmqctl message get 7F0000014DAC478E98D07BF9B51D1388 -t Orders
      rmqctl message get --offset 4096 -b 127.0.0.1:10911
    """
    async def work(ns):
        admin = Admin(ns)
        if offset is not None:
            if not broker_addr:
                raise ValueError("--offset needs -b BROKER_ADDR")
            addr, phy = broker_addr, offset
        elif msg_id and topic is None:
            addr, phy = decode_offset_msg_id(msg_id)
        elif msg_id:
            found = await _by_key(admin, topic, msg_id, True, 32)
            if not found:
                raise ValueError(f"no message {msg_id} in topic {topic}")
            return found[0]
        else:
            raise ValueError("give MSG_ID, or --offset with -b")
        resp = await admin.call(addr, RequestCode.VIEW_MESSAGE_BY_ID, {"offset": phy})
        return parse_messages(resp.body)[0]
    emit_object(message_row(ctx.run(work), body_format), ctx.output)


@message.command("query")
@click.option("-t", "--topic", required=True)
@click.option("-k", "--key", required=True, help="A business key (KEYS).")
@click.option("--max", "limit", type=int, default=32, show_default=True)
@click.option("--body", "body_format", type=click.Choice(BODY_FORMATS), default="auto",
              show_default=True)
@pass_ctx
def message_query(ctx: Ctx, topic: str, key: str, limit: int, body_format: str) -> None:
    """Messages of TOPIC whose keys include KEY (`mqadmin queryMsgByKey`)."""
    found = ctx.run(lambda ns: _by_key(Admin(ns), topic, key, False, limit))
    emit_rows([message_row(m, body_format) for m in found], ctx.output,
              ["msgId", "queueId", "queueOffset", "keys", "tags", "storeTimestamp", "body"]
              if ctx.output in ("table", "raw") else None)
