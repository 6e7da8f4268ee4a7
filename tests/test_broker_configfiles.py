"""The broker's config JSON files: read what Java 4.9.8 wrote, write what Java reads, and
survive a broken main file through the .bak copy."""

from __future__ import annotations

import os
import shutil
import stat

import pytest

from rmqnode.atomicfile import BrokenFileError, write_atomic
from rmqnode.broker.groups import SubscriptionGroupManager
from rmqnode.broker.offsets import ConsumerOffsetManager
from rmqnode.broker.schedule import DelayOffsetManager
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
    with pytest.raises(BrokenFileError, match="topics.json is unusable .not valid JSON.*"
                                              "has no usable .bak; fix or remove it"):
        TopicConfigManager(config).load()


MANAGERS = [TopicConfigManager, ConsumerOffsetManager, SubscriptionGroupManager,
            DelayOffsetManager]


@pytest.mark.parametrize("manager", MANAGERS, ids=lambda m: m.file_name)
@pytest.mark.parametrize("content", ['[1, 2]', '{"offsetTable": [1], "topicConfigTable": 3, '
                                     '"subscriptionGroupTable": "x", "dataVersion": 7}'],
                         ids=["a-list", "tables-of-the-wrong-type"])
def test_a_file_of_the_wrong_shape_is_refused_whole(tmp_path, manager, content):
    """Parsable JSON of the wrong shape is as broken as garbage: the .bak, or a refusal."""
    config = BrokerConfig(storePathRootDir=str(tmp_path))
    path = tmp_path / "config" / manager.file_name
    path.parent.mkdir()
    path.write_text(content)
    with pytest.raises(BrokenFileError, match=f"{manager.file_name} is unusable .wrong shape"):
        manager(config).load()


def test_bad_entries_are_skipped_and_the_rest_kept(tmp_path, caplog):
    """Entries with names that are no topic or group names, or fields of the wrong type, are
    skipped with one warning per file; the good entries load."""
    import logging
    logging.getLogger("rmqnode").propagate = True
    config = BrokerConfig(storePathRootDir=str(tmp_path))
    (tmp_path / "config").mkdir()
    files = {
        "topics.json": {"topicConfigTable": {
            "Good": {"topicName": "Good", "readQueueNums": 2},
            "../commitlog": {"topicName": "../commitlog"},
            "Typed": {"topicName": "Typed", "readQueueNums": "many"},
            "Listy": [1]}},
        "consumerOffset.json": {"offsetTable": {"T@G": {"0": 5}, "a/b@G": {"0": 1},
                                                "T@G2": {"x": 1}, "nosep": {"0": 1}}},
        "subscriptionGroup.json": {"subscriptionGroupTable": {
            "G": {"groupName": "G", "retryMaxTimes": 2}, "bad group": {"groupName": "bad group"},
            "Other": {"groupName": "G"}}},
        "delayOffset.json": {"offsetTable": {"1": 10, "two": 3, "3": "x"}}}
    for name, content in files.items():
        (tmp_path / "config" / name).write_bytes(fastjson.dumpb(content))
    with caplog.at_level(logging.WARNING, logger="rmqnode"):
        topics, offsets = TopicConfigManager(config), ConsumerOffsetManager(config)
        groups, delays = SubscriptionGroupManager(config), DelayOffsetManager(config)
        for manager in (topics, offsets, groups, delays):
            manager.load()
    assert topics.table["Good"].readQueueNums == 2
    assert not {"../commitlog", "Typed", "Listy"} & set(topics.table)
    assert offsets.table == {"T@G": {0: 5}}
    assert groups.find("G", auto_create=False)["retryMaxTimes"] == 2
    assert groups.find("Other", auto_create=False) is None and "bad group" not in groups.table
    assert delays.table == {1: 10}
    lines = [r.message for r in caplog.records if "config.entries_skipped" in r.message]
    assert len(lines) == 4 and any("count=3" in line and "topics.json" in line
                                   for line in lines)


def node_stderr(args, home):
    import subprocess

    from rmqnode.launch import rmqnode_argv
    return subprocess.run(rmqnode_argv(*args), capture_output=True, text=True, timeout=30,
                          cwd=home, env={**os.environ, "RMQNODE_HOME": str(home)})


@pytest.mark.parametrize("name", ["topics.json", "consumerOffset.json", "subscriptionGroup.json",
                                  "delayOffset.json"])
def test_node_refuses_to_start_on_a_broken_file_in_one_line(tmp_path, name):
    store = tmp_path / "store"
    (store / "config").mkdir(parents=True)
    (store / "config" / name).write_text('{"offsetTable": {"a": ')
    done = node_stderr(["--role", "broker", "--listen-port", "0", "--store", str(store),
                        "-D", "mappedFileSizeCommitLog=1048576"], tmp_path)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("rmqnode:")]
    assert errors == [f"rmqnode: {store / 'config' / name} is unusable (not valid JSON: "
                      "unexpected end of JSON at char 22) and has no usable .bak; "
                      "fix or remove it"]


def test_node_starts_from_the_bak_and_says_so(start_node, tmp_path):
    store = tmp_path / "store"
    (store / "config").mkdir(parents=True)
    (store / "config" / "topics.json").write_text("garbage")
    (store / "config" / "topics.json.bak").write_bytes(fastjson.dumpb({"topicConfigTable": {
        "Saved": {"topicName": "Saved", "readQueueNums": 3, "writeQueueNums": 3}}}))
    node = start_node("--role", "broker", "--listen-port", "0", "--store", str(store),
                      roles=("broker",))
    line = node.wait_line("config.loaded_from_bak")
    assert "WARNING" in line and "topics.json" in line and "may be lost" in line
    node.stop()
    again = TopicConfigManager(BrokerConfig(storePathRootDir=str(store)))
    again.load()
    assert again.table["Saved"].readQueueNums == 3  # persisted from the .bak at start


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


def test_a_rewrite_keeps_the_files_mode(tmp_path):
    """plain_acl.yml holds secret keys: an operator's chmod 600 survives the broker
    rewriting it (UPDATE_AND_CREATE_ACL_CONFIG), .bak included; a new file gets the umask's
    mode, or the one asked for."""
    path = tmp_path / "plain_acl.yml"
    write_atomic(path, b"accounts: []\n")
    os.chmod(path, 0o600)
    write_atomic(path, b"accounts: [x]\n")
    assert path.read_bytes() == b"accounts: [x]\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "plain_acl.yml.bak").stat().st_mode) == 0o600
    write_atomic(tmp_path / "contexts.json", b"{}", keep_bak=False, mode=0o600)
    assert stat.S_IMODE((tmp_path / "contexts.json").stat().st_mode) == 0o600
