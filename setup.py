"""restlake's one compiled part, the row shaper's direct path (``framework/native``).

Everything else is declared in ``pyproject.toml``. The extension is optional: where no C
compiler or OpenSSL headers are at hand the build goes on without it and the Python twin
does the same work. ``RESTLAKE_BUILD_NATIVE=0`` builds without it on purpose: a pure
``py3-none-any`` wheel, which is what the Databricks bundle ships (the machine that builds
the bundle is rarely the platform of the cluster that runs it).
"""

import os

from setuptools import Extension, setup


def native_modules(environ=os.environ):
    """The compiled modules to build (none with ``RESTLAKE_BUILD_NATIVE=0``)."""
    if environ.get("RESTLAKE_BUILD_NATIVE", "1").strip().lower() in ("0", "false", "no", "off"):
        return []
    return [Extension("framework.native._shape", ["framework/native/_shape.c"],
                      libraries=["crypto"], extra_compile_args=["-O2"], optional=True)]


if __name__ == "__main__":
    setup(ext_modules=native_modules())
