"""The settings of a new local Spark session (no Spark started)."""

from pathlib import Path

from framework.lake.spark import DEFAULT_CONF, LOG4J_CONFIG, local_settings

LOG4J = f"-Dlog4j2.configurationFile={LOG4J_CONFIG.as_uri()}"


def test_java_options_from_the_environment_are_appended_to_the_drivers():
    settings = local_settings(None, {"RESTLAKE_SPARK_JAVA_OPTIONS": " -XX:TieredStopAtLevel=1 "})
    options = settings["spark.driver.extraJavaOptions"].split()
    assert options == [LOG4J] + DEFAULT_CONF["spark.driver.extraJavaOptions"].split() + [
        "-XX:TieredStopAtLevel=1"]  # the UTC default is kept


def test_without_the_variable_the_defaults_and_conf_apply():
    settings = local_settings({"spark.sql.shuffle.partitions": 2}, {})
    assert settings["spark.sql.shuffle.partitions"] == "2"
    assert settings["spark.driver.extraJavaOptions"] == (
        f"{LOG4J} {DEFAULT_CONF['spark.driver.extraJavaOptions']}")


def test_the_sessions_catalog_folder_is_in_the_cache_folder_unless_conf_names_one():
    settings = local_settings(None, {"RESTLAKE_CACHE_DIR": "/var/cache/rl"})
    assert settings["spark.sql.warehouse.dir"] == "/var/cache/rl/spark-warehouse"
    mine = local_settings({"spark.sql.warehouse.dir": "/data/catalog"}, {"RESTLAKE_CACHE_DIR": "/x"})
    assert mine["spark.sql.warehouse.dir"] == "/data/catalog"


def test_the_jvm_logs_through_the_packaged_log4j_file_unless_the_user_names_another():
    assert Path(LOG4J_CONFIG).is_file()
    mine = "-Dlog4j2.configurationFile=file:/etc/mine.properties"
    options = local_settings(None, {"RESTLAKE_SPARK_JAVA_OPTIONS": mine})[
        "spark.driver.extraJavaOptions"].split()
    assert options[0] == LOG4J and options[-1] == mine  # the JVM takes the last -D of a name
