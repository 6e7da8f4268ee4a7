"""A message a real client keeps failing ends in the group's DLQ: ali-ons (npm ali-ons@3.12.0)
throws on every delivery with maxReconsumeTimes 2; the broker redelivers it through
%RETRY%<group> twice, then moves it to %DLQ%<group>, where `rmqctl dlq` finds it, shows it
and sends it back."""

from __future__ import annotations

import json

from test_interop_alions import run_ons
from test_rmqctl_messages import rmqctl

BODY = """
  const producer = new Producer({ httpclient, logger, nameSrv, producerGroup: 'PID_DLQ' });
  await producer.ready();
  const msg = new Message('DlqT', 'TagD', Buffer.from('doomed'));
  msg.keys = ['doomed-key'];
  const r = await producer.send(msg);
  out({ kind: 'sent', id: r.msgId });
  const consumer = new Consumer({ httpclient, logger, nameSrv, consumerGroup: 'CID_DLQ',
                                  consumeFromWhere: 'CONSUME_FROM_FIRST_OFFSET',
                                  maxReconsumeTimes: 2 });
  consumer.on('error', () => {});
  const tries = [];
  consumer.subscribe('DlqT', '*', async m => {
    if (m.body.toString() !== 'doomed') return;
    tries.push(m.reconsumeTimes);
    throw new Error('always fails');
  });
  await consumer.ready();
  const deadline = Date.now() + 40000;
  while (tries.length < 3 && Date.now() < deadline) await new Promise(r => setTimeout(r, 100));
  await new Promise(r => setTimeout(r, 3000));  // a fourth delivery would come by now
  out({ kind: 'tries', tries });
  await consumer.close();
  await producer.close();
"""


def test_a_message_failed_past_max_reconsume_times_lands_in_the_dlq(start_node):
    node, events = run_ons(start_node, "DlqT", BODY)
    [sent] = [e["id"] for e in events if e["kind"] == "sent"]
    [tries] = [e["tries"] for e in events if e["kind"] == "tries"]
    assert tries == [0, 1, 2], f"delivered, retried twice, then never again: {tries}"

    listed = rmqctl(node.namesrv, "-o", "json", "dlq", "list", "-g", "CID_DLQ")
    assert listed.returncode == 0, listed.stderr
    assert [r["messages"] for r in json.loads(listed.stdout)] == [1]

    # 4.9.8 creates the DLQ readable: no --grant-read needed.
    shown = rmqctl(node.namesrv, "-o", "ndjson", "dlq", "show", "-g", "CID_DLQ")
    assert shown.returncode == 0, shown.stderr
    [dead] = [json.loads(line) for line in shown.stdout.splitlines()]
    assert dead["body"] == "doomed" and dead["originTopic"] == "DlqT"
    assert dead["reconsumeTimes"] == 3 and dead["tags"] == "TagD"
    # ali-ons sets no UNIQ_KEY: its message id is the broker's offset id, and the copies
    # point back to it.
    assert dead["properties"]["ORIGIN_MESSAGE_ID"] == sent

    traced = rmqctl(node.namesrv, "-o", "ndjson", "message", "trace", sent, "-g", "CID_DLQ")
    assert traced.returncode == 0, traced.stderr
    stages = [json.loads(line)["stage"] for line in traced.stdout.splitlines()]
    assert stages[0] == "sent" and stages[-1] == "dead"
    assert stages.count("retry") == 2, stages

    resent = rmqctl(node.namesrv, "-o", "json", "dlq", "resend", "-g", "CID_DLQ", "--all")
    assert resent.returncode == 0, resent.stderr
    [row] = json.loads(resent.stdout)
    assert row["topic"] == "DlqT" and row["msgId"] == dead["msgId"]
    again = rmqctl(node.namesrv, "consume", "DlqT", "-g", "Reader", "--from", "first", "-e",
                   "--format", "%b")
    assert sorted(again.stdout.split()) == ["doomed", "doomed", "init"]
