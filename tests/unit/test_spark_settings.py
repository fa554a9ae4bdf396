"""The settings of a new local Spark session (no Spark started)."""

from framework.lake.spark import DEFAULT_CONF, local_settings


def test_java_options_from_the_environment_are_appended_to_the_drivers():
    settings = local_settings(None, {"RESTLAKE_SPARK_JAVA_OPTIONS": " -XX:TieredStopAtLevel=1 "})
    options = settings["spark.driver.extraJavaOptions"].split()
    assert options == DEFAULT_CONF["spark.driver.extraJavaOptions"].split() + [
        "-XX:TieredStopAtLevel=1"]  # the UTC default is kept


def test_without_the_variable_the_defaults_and_conf_apply():
    settings = local_settings({"spark.sql.shuffle.partitions": 2}, {})
    assert settings["spark.sql.shuffle.partitions"] == "2"
    assert settings["spark.driver.extraJavaOptions"] == DEFAULT_CONF["spark.driver.extraJavaOptions"]


def test_the_sessions_catalog_folder_is_in_the_cache_folder_unless_conf_names_one():
    settings = local_settings(None, {"RESTLAKE_CACHE_DIR": "/var/cache/rl"})
    assert settings["spark.sql.warehouse.dir"] == "/var/cache/rl/spark-warehouse"
    mine = local_settings({"spark.sql.warehouse.dir": "/data/catalog"}, {"RESTLAKE_CACHE_DIR": "/x"})
    assert mine["spark.sql.warehouse.dir"] == "/data/catalog"
