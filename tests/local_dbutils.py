"""A small local stand-in for Databricks' ``dbutils`` (widgets and secrets) to run notebooks.

    dbutils = LocalDbutils(widgets={"config_path": "conf/x.yaml"},
                           secrets={("restlake", "token"): "t0ken"})
    env = run_notebook("notebooks/01_generate.py", spark, dbutils)

A notebook source is plain Python (``# MAGIC`` and ``# COMMAND ----------`` lines are
comments), so it runs with ``exec`` given ``spark``, ``dbutils`` and ``display``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping


class _Widgets:
    def __init__(self, values: Mapping[str, str]) -> None:
        self._given = dict(values)
        self._defined: dict[str, str] = {}

    def text(self, name: str, defaultValue: str = "", label: str | None = None) -> None:  # noqa: N803
        self._defined[name] = str(self._given.get(name, defaultValue))

    def dropdown(self, name: str, defaultValue: str, choices: list[str],  # noqa: N803
                 label: str | None = None) -> None:
        value = str(self._given.get(name, defaultValue))
        if value not in choices:
            raise ValueError(f"widget {name}: {value!r} is not one of {choices}")
        self._defined[name] = value

    def get(self, name: str) -> str:
        if name not in self._defined:
            raise ValueError(f"InputWidgetNotDefined: no widget named {name}")
        return self._defined[name]

    def removeAll(self) -> None:  # noqa: N802
        self._defined.clear()


class _Secrets:
    def __init__(self, values: Mapping[tuple[str, str], str]) -> None:
        self._values = dict(values)
        self.reads: list[tuple[str, str]] = []

    def get(self, scope: str, key: str) -> str:
        self.reads.append((scope, key))
        if (scope, key) not in self._values:
            raise KeyError(f"secret {scope}/{key} does not exist")
        return self._values[(scope, key)]


class LocalDbutils:
    """``dbutils.widgets`` and ``dbutils.secrets`` backed by dicts."""

    def __init__(self, widgets: Mapping[str, str] | None = None,
                 secrets: Mapping[tuple[str, str], str] | None = None) -> None:
        self.widgets = _Widgets(widgets or {})
        self.secrets = _Secrets(secrets or {})


def run_notebook(path: str | Path, spark: Any, dbutils: LocalDbutils,
                 env: dict[str, Any] | None = None) -> dict[str, Any]:
    """Execute a Databricks notebook source; returns its globals (``displayed``: what it showed).

    ``env``: the globals to run in; pass a dict to inspect them when the notebook raises.
    """
    source = Path(path).read_text(encoding="utf-8")
    assert source.startswith("# Databricks notebook source\n"), f"{path} is not a notebook source"
    shown: list[Any] = []
    env = {} if env is None else env
    env.update({"__name__": "__main__", "spark": spark, "dbutils": dbutils,
                "display": shown.append, "displayed": shown})
    exec(compile(source, str(path), "exec"), env)  # noqa: S102 - our own notebooks
    return env
