"""Field names as APIs send them (spaces, commas, symbols) in ``primary_key``,
``cursor_field``, ``required_fields`` and the quality checks: written in YAML as they are
(a list entry is the name), or in the bracket form ``["last, first", id]`` where a
comma-separated text holds them (a YAML string, the control row's columns); and a name
that cannot be a column of its own is a validation error naming the field."""

from __future__ import annotations

import pytest

from control.mapping import config_to_row, row_to_config
from framework.cli.app import main
from framework.config import field_list, field_list_text, load_text, parse_source
from framework.errors import ConfigError, config_errors

BASE = {"config_id": "names", "api_name": "Names", "endpoint": "https://api.example.com/x",
        "load_start": "2024-01-01T00:00:00Z", "target": {"catalog": "raw", "schema": "s", "table": "t"}}


def errors(**keys) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_source({**BASE, **keys})
    return [str(e) for e in config_errors(info.value)]


def test_names_with_spaces_commas_and_symbols_are_taken_as_written():
    cfg = parse_source({**BASE, "primary_key": ["record id", "last, first"],
                        "cursor_field": "@timestamp", "required_fields": ["2fa", "prénom", "a.b"],
                        "quality": {"not_null": ["e-mail address"], "unique": ["record id"]}})
    assert cfg.primary_key == ["record id", "last, first"]
    assert cfg.cursor_field == "@timestamp" and cfg.required_fields == ["2fa", "prénom", "a.b"]


def test_yaml_writes_them_as_list_entries_or_in_the_bracket_form():
    [cfg] = load_text(
        "config_id: names\napi_name: Names\nendpoint: https://api.example.com/x\n"
        "load_start: 2024-01-01T00:00:00Z\ntarget: {catalog: raw, schema: s, table: t}\n"
        "primary_key: [\"last, first\", record id]\n"
        "required_fields: '[\"a, b\", \"c\"]'\n")
    assert cfg.primary_key == ["last, first", "record id"]
    assert cfg.required_fields == ["a, b", "c"]
    # the comma-separated text form is as before: names without a comma
    assert parse_source({**BASE, "primary_key": "id, first name"}).primary_key == ["id", "first name"]


def test_the_bracket_form_only_where_a_name_needs_it():
    assert field_list_text(["id", "first name"]) == "id,first name"  # the columns as before
    assert field_list_text(["last, first", "id"]) == '["last, first","id"]'
    assert field_list_text([" padded"]) == '[" padded"]'
    assert field_list_text(['say "hi"']) == '["say \\"hi\\""]'
    assert field_list_text([]) is None
    for names in (["id"], ["id", "first name"], ["last, first", "id"], [" padded"], ['[x]'],
                  ['say "hi"']):
        assert field_list(field_list_text(names)) == names


def test_the_control_row_round_trips_such_names():
    cfg = parse_source({**BASE, "primary_key": ["record id", "last, first"],
                        "required_fields": ["2fa"], "cursor_field": "@timestamp"})
    row = config_to_row(cfg)
    assert row["PrimaryColumn"] == '["record id","last, first"]'
    assert row["RequiredFields"] == "2fa" and row["CursorField"] == "@timestamp"
    back = row_to_config(row)
    assert (back.primary_key, back.required_fields, back.cursor_field) == (
        ["record id", "last, first"], ["2fa"], "@timestamp")
    # a row written by hand with SQL, in either form
    assert row_to_config({**row, "PrimaryColumn": "record id, last"}).primary_key == ["record id", "last"]


@pytest.mark.parametrize("keys, expected", [
    ({"primary_key": '["first name"'},
     "primary_key: '[\"first name\"' is not a bracket list of field names"),
    ({"primary_key": ["id", "ID"]},
     "primary_key: 'id' and 'ID' are one column (id): name each field once"),
    ({"primary_key": ["user.login", "user_login"]},
     "primary_key: 'user.login' and 'user_login' are one column (user_login)"),
    ({"primary_key": ["source system"]},
     "primary_key: 'source system' would be column source_system, which restlake writes itself"),
    ({"cursor_field": "_run_id"},
     "cursor_field: '_run_id' would be column _run_id, which restlake writes itself"),
    ({"required_fields": ["ok", "bad\x00name"]},
     "required_fields: 'bad\\x00name' is not a valid field name (a control character)"),
    ({"required_fields": ["  "]}, "required_fields: '  ' is not a valid field name (empty)"),
    ({"primary_key": ["x" * 256]}, "is not a valid field name (longer than 255 characters)"),
    ({"quality": {"not_null": ["bad\nname"]}},
     "quality.not_null.value: 'bad\\nname' is not a valid field name (a control character)"),
    ({"detail": {"endpoint": "https://api.example.com/x/{id}", "id_field": ""}},
     "detail.id_field: '' is not a valid field name (empty)"),
])
def test_a_name_that_cannot_be_a_column_of_its_own_names_the_field(keys, expected):
    found = errors(**keys)
    assert any(expected in e for e in found), found


def test_required_fields_check_the_record_as_it_is():
    # a presence check of the record's own keys: a name restlake also writes, or two
    # spellings, are no clash there (only the key and the cursor pick a column)
    cfg = parse_source({**BASE, "required_fields": ["source_system", "id", "ID"]})
    assert cfg.required_fields == ["source_system", "id", "ID"]


def test_validate_prints_the_field_and_the_name(tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text("config_id: names\napi_name: Names\nendpoint: https://api.example.com/x\n"
                    "load_start: 2024-01-01T00:00:00Z\ntarget: {catalog: raw, schema: s, table: t}\n"
                    "primary_key: [record id, Record ID]\n")
    assert main(["validate", str(path)]) == 1
    err = " ".join(capsys.readouterr().err.split())
    assert "source 'names': primary_key: 'record id' and 'Record ID' are one column (record_id)" in err
