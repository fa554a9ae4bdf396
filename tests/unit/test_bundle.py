"""The Databricks Asset Bundle is well formed and points at files and entry points that exist."""

from __future__ import annotations

import importlib
import importlib.util
import re
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - the test extra installs tomli on Python 3.10
    import tomli as tomllib


def _bundle() -> tuple[dict, list[tuple[Path, dict]]]:
    root = yaml.safe_load((ROOT / "databricks.yml").read_text())
    resources = []
    for pattern in root["include"]:
        files = sorted(ROOT.glob(pattern))
        assert files, f"include {pattern} matches no file"
        resources += [(f, yaml.safe_load(f.read_text())) for f in files]
    return root, resources


def _tasks(resources):
    for path, doc in resources:
        for name, job in doc["resources"]["jobs"].items():
            for task in job["tasks"]:
                yield path, name, job, task


def test_bundle_declares_name_targets_and_the_wheel_artifact():
    root, resources = _bundle()
    assert root["bundle"]["name"] == "restlake"
    assert {"dev", "prod"} <= set(root["targets"])
    assert sum(t.get("default", False) for t in root["targets"].values()) == 1
    artifact = root["artifacts"]["restlake_wheel"]
    assert artifact["type"] == "whl" and (ROOT / artifact["path"] / "pyproject.toml").exists()
    used = {m for _, doc in resources for m in re.findall(r"\$\{var\.(\w+)\}", yaml.safe_dump(doc))}
    used |= set(re.findall(r"\$\{var\.(\w+)\}", (ROOT / "databricks.yml").read_text()))
    assert used <= set(root["variables"]), f"undefined variables: {used - set(root['variables'])}"


def test_the_bundle_ships_a_pure_wheel_that_installs_on_any_cluster():
    """The wheel the bundle builds has no compiled part: built on a laptop, a wheel with
    the row shaper's C extension would carry the laptop's platform tag and Python version
    and not install on the cluster."""
    root, _ = _bundle()
    build = root["artifacts"]["restlake_wheel"]["build"]
    env = dict(re.findall(r"(\w+)=(\S+)\s", build.split("python", 1)[0] + " "))
    spec = importlib.util.spec_from_file_location("restlake_setup", ROOT / "setup.py")
    setup = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(setup)  # not as __main__: defines, builds nothing
    assert [m.name for m in setup.native_modules({})] == ["framework.native._shape"]
    assert all(m.optional for m in setup.native_modules({}))
    assert setup.native_modules(env) == []


def test_every_task_points_at_an_existing_entry_point_or_notebook():
    _, resources = _bundle()
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    kinds = set()
    for path, name, job, task in _tasks(resources):
        keys = {t["task_key"] for t in job["tasks"]}
        for dep in task.get("depends_on", []):
            assert dep["task_key"] in keys, f"{name}.{task['task_key']} depends on a missing task"
        clusters = {c["job_cluster_key"] for c in job.get("job_clusters", [])}
        assert task["job_cluster_key"] in clusters
        for lib in task.get("libraries", []):
            assert lib["whl"].endswith(".whl") and (path.parent / lib["whl"]).parent.name == "dist"
        if "python_wheel_task" in task:
            wheel = task["python_wheel_task"]
            assert wheel["package_name"] == "restlake"
            module, _, func = scripts[wheel["entry_point"]].partition(":")
            assert callable(getattr(importlib.import_module(module), func))
            kinds.add("wheel")
        else:
            notebook = path.parent / task["notebook_task"]["notebook_path"]
            assert notebook.exists(), notebook
            assert notebook.read_text().startswith("# Databricks notebook source\n")
            kinds.add("notebook")
    assert kinds == {"wheel", "notebook"}


def test_jobs_run_generate_before_ingestion_on_a_schedule_with_volume_staging():
    root, resources = _bundle()
    [(_, doc)] = [r for r in resources if "restlake_ingestion" in r[1]["resources"]["jobs"]]
    job = doc["resources"]["jobs"]["restlake_ingestion"]
    assert len(job["schedule"]["quartz_cron_expression"].split()) in (6, 7)  # Quartz syntax
    assert job["schedule"]["timezone_id"] == "UTC"
    run = next(t for t in job["tasks"] if t["python_wheel_task"]["entry_point"] == "restlake-run")
    assert run["depends_on"] == [{"task_key": "generate"}]
    # a bad hand-added control row fails generate after the others are planned: they still run
    for _, _, _, task in _tasks(resources):
        if task.get("depends_on") == [{"task_key": "generate"}]:
            assert task["run_if"] == "ALL_DONE"
    for _, _, job, _ in _tasks(resources):
        for cluster in job["job_clusters"]:
            staging = cluster["new_cluster"]["spark_env_vars"]["RESTLAKE_STAGING"]
            assert staging == "${var.staging_volume}"
    assert root["variables"]["staging_volume"]["default"].startswith("/Volumes/")


def test_the_jobs_set_every_variable_the_deployed_configs_use():
    """The default configs' endpoints name ${DT_ENV_URL} and ${HEALTH_API_URL}: a job
    cluster without them failed every one of its sources at generate."""
    root, resources = _bundle()
    conf = root["variables"]["conf_dir"]["default"].replace("${workspace.file_path}/", "")
    used = set()
    for path in sorted((ROOT / conf).glob("*.y*ml")):
        used |= set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)\}", path.read_text()))
    assert {"DT_ENV_URL", "HEALTH_API_URL"} <= used
    for _, _, job, _ in _tasks(resources):
        for cluster in job["job_clusters"]:
            env = cluster["new_cluster"]["spark_env_vars"]
            assert used <= set(env), f"{job['name']}: {sorted(used - set(env))} not set"
            for name in used:  # each from a bundle variable the deployer sets
                var = re.fullmatch(r"\$\{var\.(\w+)\}", env[name]).group(1)
                assert var in root["variables"]


def test_notebooks_are_databricks_sources_with_widgets():
    for notebook in sorted((ROOT / "notebooks").glob("*.py")):
        text = notebook.read_text()
        assert text.startswith("# Databricks notebook source\n"), notebook
        assert "# COMMAND ----------" in text and "dbutils.widgets" in text
        compile(text, str(notebook), "exec")


def test_wheel_entry_points_parse_their_arguments():
    from framework.cli import jobs

    args = jobs._generate_parser().parse_args(["--conf-dir", "conf/monitoring", "--due"])
    assert args.conf_dir == ["conf/monitoring"] and args.due
    args = jobs._run_parser().parse_args(["--config-id", "a", "b", "--control-catalog", "ops"])
    assert args.config_id == ["a", "b"] and args.control_catalog == "ops"
    assert [p.name for p in jobs.config_files([str(ROOT / "conf/monitoring")])] == [
        "dynatrace.yaml", "health_api.yaml"]
    assert jobs.main(["nope"]) == 2
