"""restlake: metadata-driven ingestion of REST APIs into Delta Lake tables."""


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("restlake")
    except PackageNotFoundError:  # run from a source tree that is not installed
        return "0+unknown"


__version__ = _version()
