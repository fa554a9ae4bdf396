"""A source's configuration over its life, from the command line: a file removed from the
configs folder, ``disable`` / ``enable``, ``generate`` from the file again, ``status``."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from framework.cli.app import main

pytestmark = pytest.mark.spark


def _write(conf: Path, config_id: str, **extra) -> Path:
    path = conf / f"{config_id}.yaml"
    path.write_text(yaml.safe_dump({
        "config_id": config_id, "api_name": "Life", "endpoint": f"https://api.example.com/{config_id}",
        "load_start": "2024-01-01T00:00:00Z", "load_end": "2024-01-02T00:00:00Z",
        "primary_key": ["id"], "target": {"catalog": "raw", "schema": "life", "table": config_id},
        **extra}))
    return path


def _one_line(text: str) -> str:
    return " ".join(text.split())


def test_a_source_whose_file_is_gone_is_disabled_from_the_command_line(store, tmp_path, capsys):
    wh = str(store.warehouse.root)
    conf = tmp_path / "conf"
    conf.mkdir()
    _write(conf, "kept")
    gone = _write(conf, "gone")
    assert main(["--warehouse", wh, "generate", "--config", str(conf)]) == 0
    capsys.readouterr()

    # the file is removed: its row is still in the table, and a folder generate says so
    gone.unlink()
    assert main(["--warehouse", wh, "generate", "--due", "--conf-dir", str(conf)]) == 0
    err = _one_line(capsys.readouterr().err)
    assert "gone" in err and "no config file" in err and "restlake disable --config-id gone" in err
    assert "kept:" not in err

    # disable: the one store method the API uses; an unknown id is named, the others still go
    assert main(["--warehouse", wh, "disable", "--config-id", "gone", "nope"]) == 1
    captured = capsys.readouterr()
    assert "no control row with ConfigId nope" in _one_line(captured.err)
    assert "gone: disabled" in _one_line(captured.out)
    assert store.get("gone")["Enabled"] is False and store.get("kept")["Enabled"] is True

    # a disabled row is no longer planned, nor reported as fileless (it was dealt with)
    assert main(["--warehouse", wh, "generate", "--due", "--conf-dir", str(conf)]) == 0
    captured = capsys.readouterr()
    assert "gone" not in captured.err
    assert main(["--warehouse", wh, "generate", "--config-id", "gone"]) == 0
    assert "disabled" in capsys.readouterr().out

    # status shows why it is not loaded, and how to undo it
    assert main(["--warehouse", wh, "status"]) == 0
    out = _one_line(capsys.readouterr().out)
    assert "gone: disabled" in out and "restlake enable --config-id gone" in out

    # enable undoes it, saying what comes next; an id of no row exits 1 naming it
    assert main(["--warehouse", wh, "enable", "--config-id", "gone"]) == 0
    assert "gone: enabled: the next run loads its PENDING FULL_LOAD" in _one_line(
        capsys.readouterr().out)
    assert store.get("gone")["Enabled"] is True
    assert main(["--warehouse", wh, "enable", "--config-id", "nope"]) == 1
    assert "no control row with ConfigId nope" in _one_line(capsys.readouterr().err)


def test_generate_from_the_file_of_a_disabled_source_enables_it_and_says_so(store, tmp_path, capsys):
    wh = str(store.warehouse.root)
    conf = tmp_path / "conf"
    conf.mkdir()
    path = _write(conf, "paused")
    assert main(["--warehouse", wh, "generate", "--config", str(path)]) == 0
    assert main(["--warehouse", wh, "disable", "--config-id", "paused"]) == 0
    out = _one_line(capsys.readouterr().out)
    # the message says what undoes it, generate from the file included
    assert "restlake enable --config-id paused" in out and "generate" in out
    assert main(["--warehouse", wh, "generate", "--config", str(path)]) == 0
    out = _one_line(capsys.readouterr().out)
    assert store.get("paused")["Enabled"] is True
    assert "enabled again" in out
    # a file that says enabled: false keeps it disabled (and says nothing of enabling)
    _write(conf, "paused", enabled=False)
    assert main(["--warehouse", wh, "generate", "--config", str(path)]) == 0
    out = _one_line(capsys.readouterr().out)
    assert store.get("paused")["Enabled"] is False and "enabled again" not in out
    assert "disabled by its config (enabled: false)" in out


def test_retry_goes_on_after_an_id_without_a_row(store, tmp_path, capsys):
    # `retry --config-id typo failed_one` stopped at the typo: the FAILED row named after it
    # was never retried (disable, enable and run go on with the other ids).
    from control import states

    wh = str(store.warehouse.root)
    conf = tmp_path / "conf"
    conf.mkdir()
    assert main(["--warehouse", wh, "generate", "--config", str(_write(conf, "broke"))]) == 0
    claim = store.claim("broke", "runner-1", "run-1")
    store.finish(claim, states.fail(claim.state, "runner-1", "HTTP 503"))
    assert store.get("broke")["LoadStatus"] == "FAILED"
    capsys.readouterr()
    assert main(["--warehouse", wh, "retry", "--config-id", "typo", "broke"]) == 1
    captured = capsys.readouterr()
    assert "no control row with ConfigId 'typo'" in _one_line(captured.err)
    assert "broke: PENDING again" in _one_line(captured.out)
    assert store.get("broke")["LoadStatus"] == "PENDING"

    # a disabled row retried is PENDING again, and says that no run claims it yet
    claim = store.claim("broke", "runner-1", "run-2")
    store.finish(claim, states.fail(claim.state, "runner-1", "HTTP 503"))
    assert main(["--warehouse", wh, "disable", "--config-id", "broke"]) == 0
    capsys.readouterr()
    assert main(["--warehouse", wh, "retry", "--config-id", "broke"]) == 0
    out = _one_line(capsys.readouterr().out)
    assert "broke: PENDING again" in out and "disabled" in out
    assert "restlake enable --config-id broke" in out


def test_a_renamed_config_id_takes_over_its_target_once_the_old_row_is_disabled(
        store, tmp_path, capsys):
    # A config_id renamed in its file: the new id was refused ("also written by config
    # old") for as long as the old row existed, disabled or not, and no command removes a
    # row, so the rename needed a DELETE in SQL. A disabled row writes nothing: it clashes
    # with no one, and enabling it again is refused while another source writes its rows.
    wh = str(store.warehouse.root)
    conf = tmp_path / "conf"
    conf.mkdir()
    old = _write(conf, "old_id")
    assert main(["--warehouse", wh, "generate", "--config", str(conf)]) == 0
    old.unlink()
    _write(conf, "new_id", target={"catalog": "raw", "schema": "life", "table": "old_id"})
    capsys.readouterr()
    assert main(["--warehouse", wh, "generate", "--config", str(conf)]) == 1
    captured = capsys.readouterr()
    err = _one_line(captured.err)
    assert "new_id" in err and "also written by config old_id" in err
    assert "restlake disable --config-id old_id" in err
    assert store.get("new_id") is None

    assert main(["--warehouse", wh, "disable", "--config-id", "old_id"]) == 0
    assert main(["--warehouse", wh, "generate", "--config", str(conf)]) == 0
    assert store.get("new_id")["LoadStatus"] == "PENDING"
    capsys.readouterr()
    # every row planned together: the disabled one is not a clash either
    assert main(["--warehouse", wh, "generate", "--due"]) == 0
    assert "invalid" not in capsys.readouterr().out

    # enabling the old row again would have two sources replace each other's rows
    assert main(["--warehouse", wh, "enable", "--config-id", "old_id"]) == 1
    err = _one_line(capsys.readouterr().err)
    assert "old_id" in err and "also written by config new_id" in err
    assert store.get("old_id")["Enabled"] is False


def test_run_of_a_disabled_row_by_its_id_skips_it(store, tmp_path, capsys):
    # `run --all` left a disabled row alone, but `run --config-id ID` (a scheduled job
    # naming its sources) claimed and loaded it: disabling a source whose file was removed
    # did not stop the job that names it.
    wh = str(store.warehouse.root)
    conf = tmp_path / "conf"
    conf.mkdir()
    path = _write(conf, "off", endpoint="http://127.0.0.1:9/items",
                  limits={"timeout_s": 2, "max_retries": 0})
    assert main(["--warehouse", wh, "generate", "--config", str(path)]) == 0
    assert main(["--warehouse", wh, "disable", "--config-id", "off"]) == 0
    capsys.readouterr()
    assert main(["--warehouse", wh, "run", "--config-id", "off"]) == 0
    out = _one_line(capsys.readouterr().out)
    assert "SKIPPED" in out and "disabled" in out
    row = store.get("off")
    assert (row["LoadStatus"], row["Attempt"], row["ClaimedBy"]) == ("PENDING", 0, None)


def test_a_new_source_whose_file_says_enabled_false_gets_a_disabled_row(store, tmp_path, capsys):
    # generate "skipped" it and wrote no row: status did not show it, and `restlake enable`
    # answered "no control row" for a source whose file was right there. Its row holds its
    # first load, which no run claims until it is enabled.
    wh = str(store.warehouse.root)
    conf = tmp_path / "conf"
    conf.mkdir()
    path = _write(conf, "staged", enabled=False)
    assert main(["--warehouse", wh, "generate", "--config", str(path)]) == 0
    out = _one_line(capsys.readouterr().out)
    assert "created" in out and "no run claims it until restlake enable --config-id staged" in out
    row = store.get("staged")
    assert row is not None and row["Enabled"] is False and row["LoadStatus"] == "PENDING"
    assert main(["--warehouse", wh, "status"]) == 0
    assert "staged: disabled" in _one_line(capsys.readouterr().out)
    assert main(["--warehouse", wh, "run", "--all"]) == 0
    assert (store.get("staged")["LoadStatus"], store.get("staged")["Attempt"]) == ("PENDING", 0)
    capsys.readouterr()
    assert main(["--warehouse", wh, "enable", "--config-id", "staged"]) == 0
    assert "staged: enabled: the next run loads its PENDING FULL_LOAD (2024-01-01" in _one_line(
        capsys.readouterr().out)
    assert store.get("staged")["Enabled"] is True
    assert store.claimable_ids() == ["staged"]


def test_generate_with_config_and_conf_dir_upserts_both(store, tmp_path, capsys):
    # --conf-dir was dropped without a word when --config was given too
    wh = str(store.warehouse.root)
    one, more = tmp_path / "one", tmp_path / "more"
    one.mkdir()
    more.mkdir()
    path = _write(one, "single")
    _write(more, "in_folder")
    assert main(["--warehouse", wh, "generate", "--config", str(path), "--conf-dir", str(more)]) == 0
    assert store.get("single") is not None and store.get("in_folder") is not None
    capsys.readouterr()
    assert main(["--warehouse", wh, "generate", "--config-id", "single", "--conf-dir", str(more)]) == 1
    assert "not both" in _one_line(capsys.readouterr().err)
