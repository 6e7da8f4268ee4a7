"""The broker's config JSON files: read what Java 4.9.8 wrote, write what Java reads, and
survive a broken main file through the .bak copy."""

from __future__ import annotations

import shutil

import pytest

from rmqnode.broker.groups import SubscriptionGroupManager
from rmqnode.broker.offsets import ConsumerOffsetManager
from rmqnode.broker.topics import TopicConfigManager
from rmqnode.config import BrokerConfig
from rmqnode.net import fastjson


@pytest.fixture
def store_root(java_store_pristine, tmp_path):
    shutil.copytree(java_store_pristine / "config", tmp_path / "config")
    return tmp_path


def test_reads_java_files(store_root):
    config = BrokerConfig(storePathRootDir=str(store_root))
    offsets = ConsumerOffsetManager(config)
    offsets.load()
    assert offsets.queues("GID_PUB", "PubA") == {0: 660, 1: 540, 2: 660, 3: 540}
    assert offsets.query("GID_PUB", "%RETRY%GID_PUB", 0) == 128
    assert offsets.query("GID_PUB", "PubA", 7) == -1
    assert set(offsets.topics_of_group("GID_PUB")) == {"PubA", "%RETRY%GID_PUB"}
    groups = SubscriptionGroupManager(config)
    groups.load()
    assert groups.find("GID_PUB", auto_create=False)["retryMaxTimes"] == 16
    topics = TopicConfigManager(config)
    topics.load()
    assert (topics.table["PubA"].readQueueNums, topics.table["PubB"].writeQueueNums) == (4, 2)
    assert topics.data_version.counter == 11


def test_written_files_keep_java_shape_and_roundtrip(store_root):
    config = BrokerConfig(storePathRootDir=str(store_root))
    offsets = ConsumerOffsetManager(config)
    offsets.load()
    before = dict(offsets.table)
    offsets.commit("G", "T", 3, 42)
    offsets.persist()
    text = (store_root / "config" / "consumerOffset.json").read_text()
    assert '"T@G":{3:42}' in text  # Map<Integer,Long> keys unquoted, as fastjson writes them
    again = ConsumerOffsetManager(config)
    again.load()
    assert again.table == before | {"T@G": {3: 42}}
    # The previous content is the .bak, exactly as it was.
    bak = fastjson.loads((store_root / "config" / "consumerOffset.json.bak").read_bytes())
    assert "T@G" not in bak["offsetTable"]


def test_broken_main_file_falls_back_to_bak(store_root):
    config = BrokerConfig(storePathRootDir=str(store_root))
    (store_root / "config" / "topics.json").write_text('{"dataVersion":{"coun')
    topics = TopicConfigManager(config)
    topics.load()
    assert topics.data_version.counter == 10  # what topics.json.bak held
    assert "PubA" in topics.table


def test_both_files_broken_is_a_clear_error(store_root):
    config = BrokerConfig(storePathRootDir=str(store_root))
    for name in ("topics.json", "topics.json.bak"):
        (store_root / "config" / name).write_text("{nope")
    with pytest.raises(ValueError, match="topics.json"):
        TopicConfigManager(config).load()


def test_groups_auto_create_with_rocketmq_defaults(tmp_path):
    config = BrokerConfig(storePathRootDir=str(tmp_path))
    groups = SubscriptionGroupManager(config)
    assert groups.find("new-group")["retryQueueNums"] == 1
    assert SubscriptionGroupManager(BrokerConfig(storePathRootDir=str(tmp_path),
                                                 autoCreateSubscriptionGroup=False)
                                    ).find("other") is None
    groups.update({"groupName": "new-group", "retryMaxTimes": 3})
    groups.persist()
    reloaded = SubscriptionGroupManager(config)
    reloaded.load()
    assert reloaded.find("new-group", auto_create=False)["retryMaxTimes"] == 3
    assert reloaded.find("new-group", auto_create=False)["consumeEnable"] is True
