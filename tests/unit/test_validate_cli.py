"""`restlake validate` on the config files in tests/configs (no Spark).

Each file in ``tests/configs/bad`` holds one problem and starts with the line
``# expect: <part of the error>``; a second line ``# source: <id>`` names the source
that the error must name, when there is one.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from framework.cli import app as cli
from framework.config import load_file

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
BAD = sorted((CONFIGS / "bad").glob("*.yaml"))
GOOD = sorted((CONFIGS / "good").glob("*.yaml"))
RESTLAKE = Path(sys.executable).with_name("restlake")

# Literal secrets written into bad files: they must never be echoed back.
LITERALS = {
    "literal_bearer_secret": "abc123",
    "literal_client_secret": "s3cr3t-Value",
    "literal_password": "hunter2hunter2",
    "numeric_literal_secret": "98765432",
}


def _header(path: Path) -> tuple[str, str | None]:
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines and lines[0].startswith("# expect: "), f"{path.name} lacks '# expect:'"
    expect = lines[0][len("# expect: "):]
    source = None
    if len(lines) > 1 and lines[1].startswith("# source: "):
        source = lines[1][len("# source: "):]
    return expect, source


@pytest.fixture(autouse=True)
def _unset_test_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RESTLAKE_TEST_UNSET_HOST", raising=False)


def _error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.strip()]


def test_bad_config_set_covers_enough_cases() -> None:
    assert len(BAD) >= 28
    expectations = [_header(p)[0] for p in BAD]
    assert all(expectations), "every bad file names the error it expects"


@pytest.mark.parametrize("path", BAD, ids=lambda p: p.stem)
def test_validate_reports_one_error_line(path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    expect, source = _header(path)

    code = cli.main(["validate", str(path)])

    out, err = capsys.readouterr()
    assert code == 1
    lines = _error_lines(err)
    assert len(lines) == 1, f"expected one error line, got:\n{err}"
    line = lines[0]
    prefix = f"error {path}: " + (f"source '{source}': " if source else "")
    assert line.startswith(prefix), line
    assert expect in line, line
    assert "Traceback" not in err and "Traceback" not in out
    assert out.strip() == ""


@pytest.mark.parametrize("name,literal", sorted(LITERALS.items()))
def test_validate_never_echoes_a_literal_secret(name: str, literal: str,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    path = CONFIGS / "bad" / f"{name}.yaml"
    assert literal in path.read_text(encoding="utf-8")

    assert cli.main(["validate", str(path)]) == 1

    out, err = capsys.readouterr()
    assert literal not in out + err


def test_error_text_is_not_read_as_markup(capsys: pytest.CaptureFixture[str]) -> None:
    path = CONFIGS / "bad" / "bad_data_path_brackets.yaml"

    assert cli.main(["validate", str(path)]) == 1

    err = capsys.readouterr().err
    assert "'items[/red]'" in err


@pytest.mark.parametrize("path", GOOD, ids=lambda p: p.stem)
def test_good_configs_validate(path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ids = ", ".join(cfg.config_id for cfg in load_file(path))

    code = cli.main(["validate", str(path)])

    out, err = capsys.readouterr()
    assert code == 0, err
    assert err == ""
    assert out.strip() == f"ok {path}: {ids}"


def test_good_file_with_two_sources() -> None:
    configs = load_file(CONFIGS / "good" / "two_sources.yaml")

    assert [c.config_id for c in configs] == ["billing_invoices", "logs_search"]
    assert configs[0].pagination.style == "offset"
    assert configs[0].primary_key == ["account_id", "invoice_id"]
    assert configs[1].method == "POST" and configs[1].allow_post
    assert configs[1].auth.method == "oauth2_client_credentials"


def test_validate_goes_on_after_a_bad_file(capsys: pytest.CaptureFixture[str]) -> None:
    bad = CONFIGS / "bad" / "unknown_pagination_style.yaml"
    good = CONFIGS / "good" / "minimal.yaml"

    code = cli.main(["validate", str(bad), str(good)])

    out, err = capsys.readouterr()
    assert code == 1
    assert len(_error_lines(err)) == 1 and str(bad) in err
    assert f"ok {good}: minimal-1" in out


def test_console_script_exit_code_and_no_traceback(tmp_path: Path) -> None:
    assert RESTLAKE.exists(), f"console script not installed at {RESTLAKE}"
    bad = CONFIGS / "bad" / "bad_data_path_brackets.yaml"
    good = CONFIGS / "good" / "github_issues.yaml"
    env = {**os.environ, "COLUMNS": "40"}  # a narrow terminal must not wrap the error line
    env.pop("RESTLAKE_TEST_UNSET_HOST", None)

    proc = subprocess.run([str(RESTLAKE), "validate", str(good), str(bad)], capture_output=True,
                          text=True, timeout=60, env=env, cwd=tmp_path)

    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    lines = _error_lines(proc.stderr)
    assert len(lines) == 1, proc.stderr
    assert str(bad) in lines[0] and "source 'bad_data_path_brackets'" in lines[0]
    assert f"ok {good}: gh_issues" in proc.stdout


def test_console_script_without_arguments_prints_help() -> None:
    assert cli.main([]) == 2


def test_validate_reports_each_invalid_field_of_a_file(tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "three_problems.yaml"
    path.write_text("config_id: multi\napi_name: Demo\nendpoint: ftp://x\nwindow: fortnightly\n"
                    "load_start: notadate\ntarget: {catalog: raw, schema: demo, table: multi}\n")

    code = cli.main(["validate", str(path)])

    out, err = capsys.readouterr()
    lines = _error_lines(err)
    assert code == 1 and out.strip() == ""
    assert len(lines) == 3, err
    assert all(line.startswith(f"error {path}: source 'multi': ") for line in lines), err
    assert sorted(line.split(": ")[2] for line in lines) == ["endpoint", "load_start", "window"]


def test_a_date_out_of_range_is_an_error_line_of_its_file_and_the_others_are_checked(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("sources:\n  - config_id: a\n    api_name: A\n"
                   "    endpoint: https://api.example.com/a\n    load_start: 2024-01-01\n"
                   "    load_end: 2024-02-30\n    target: {catalog: raw, schema: s, table: a}\n")
    good = CONFIGS / "good" / "minimal.yaml"

    code = cli.main(["validate", str(bad), str(good)])

    out, err = capsys.readouterr()
    assert code == 1
    [line] = _error_lines(err)
    assert line.startswith(f"error {bad}: sources[0].load_end: invalid date or time '2024-02-30'")
    assert "day is out of range for month" in line
    assert f"ok {good}: minimal-1" in out


def test_a_config_id_of_two_files_is_an_error_as_generate_says(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = CONFIGS / "good" / "minimal.yaml"
    again = tmp_path / "again.yaml"
    again.write_text(good.read_text(encoding="utf-8").replace("table: ", "table: other_"),
                     encoding="utf-8")

    code = cli.main(["validate", str(good), str(again)])

    out, err = capsys.readouterr()
    assert code == 1
    [line] = _error_lines(err)
    assert line == (f"error {again}: source 'minimal-1': config_id: config_id is also defined "
                    f"in {good}")


def test_validate_reads_a_folder_as_generate_does(tmp_path, capsys):
    # `generate --config DIR` and `--conf-dir DIR` read a folder's *.yaml / *.yml files, but
    # `validate DIR` answered "cannot read file: Is a directory": a CI step checking the
    # folder that generate reads could not be written.
    for good in GOOD[:2]:
        (tmp_path / good.name).write_text(good.read_text(encoding="utf-8"), encoding="utf-8")
    (tmp_path / "notes.txt").write_text("not a config")
    assert cli.main(["validate", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert all(f"{tmp_path / g.name}:" in " ".join(out.split()) for g in GOOD[:2]), out
    bad = sorted((CONFIGS / "bad").glob("*.yaml"))[0]
    (tmp_path / "zz_bad.yaml").write_text(bad.read_text(encoding="utf-8"), encoding="utf-8")
    empty = tmp_path / "empty"
    empty.mkdir()
    assert cli.main(["validate", str(tmp_path), str(empty)]) == 1
    captured = capsys.readouterr()
    err = " ".join(captured.err.split())
    assert "zz_bad.yaml" in err and "no config files (*.yaml, *.yml) in this folder" in err
    assert "Is a directory" not in err and "ok" in captured.out  # the good files still checked


def test_a_file_given_twice_is_one_file(tmp_path, capsys):
    # `validate conf conf/a.yaml` (a folder and a glob over it) reported the file's config_id
    # as "also defined in" itself, and `generate --config` refused it the same way.
    from framework.config import config_files

    good = GOOD[0]
    (tmp_path / good.name).write_text(good.read_text(encoding="utf-8"), encoding="utf-8")
    assert cli.main(["validate", str(tmp_path), str(tmp_path / good.name),
                     str(tmp_path / "." / good.name)]) == 0
    assert "also defined" not in capsys.readouterr().err
    assert config_files([str(tmp_path), str(tmp_path / good.name)]) == [tmp_path / good.name]


def test_a_disabled_source_shares_a_target_with_no_one(tmp_path, capsys):
    # generate lets a disabled source's target be written by another (a renamed config_id
    # whose old file says enabled: false); validate refused the pair all the same.
    def source(cid: str, **extra: object) -> str:
        return ("config_id: " + cid + "\napi_name: A\nsource_system: a\n"
                "endpoint: https://api.example.com/x\nload_start: 2024-01-01T00:00:00Z\n"
                "target: {catalog: raw, schema: s, table: shared}\n"
                + "".join(f"{k}: {v}\n" for k, v in extra.items()))

    (tmp_path / "old.yaml").write_text(source("old_id", enabled="false"))
    (tmp_path / "new.yaml").write_text(source("new_id"))
    assert cli.main(["validate", str(tmp_path)]) == 0, capsys.readouterr().err
    (tmp_path / "old.yaml").write_text(source("old_id"))
    assert cli.main(["validate", str(tmp_path)]) == 1
    assert "also written by config" in capsys.readouterr().err
