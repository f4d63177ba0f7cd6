"""services/kinesis/service.py: the store's command line binds the stack's address and keeps its data durable, and a
former kinesis-mock snapshot is set aside once, with a message, never silently dropped."""

from __future__ import annotations

from pipeline.settings import load_settings
from services.kinesis import service as kinesis


def test_the_store_binds_the_stack_address_with_a_leveldb_folder(tmp_path):
    settings = load_settings(_env_file=None, state_dir=tmp_path)
    definition = kinesis.service(settings)
    assert definition.ports == (4567,)
    assert f"--host={settings.bind_host}" in definition.command
    assert f"--path={tmp_path / 'data' / 'kinesis'}" in definition.command
    assert definition.command[1].endswith("services/kinesis/server.js")


def test_a_former_kinesis_mock_snapshot_is_set_aside_once_with_a_message(tmp_path, capsys):
    settings = load_settings(_env_file=None, state_dir=tmp_path)
    old = tmp_path / "data" / "localstack" / "var" / "lib" / "localstack" / "state" / "kinesis"
    old.mkdir(parents=True)
    (old / "000000000000.json").write_text("{}")
    kinesis.set_aside_kinesis_mock_state(settings)
    kept = tmp_path / "data" / "kinesis-mock-state-before-kinesalite" / "000000000000.json"
    assert kept.read_text() == "{}" and not old.exists()
    assert "not carried over" in capsys.readouterr().out
    kinesis.set_aside_kinesis_mock_state(settings)  # nothing left: nothing to say
    assert capsys.readouterr().out == ""
