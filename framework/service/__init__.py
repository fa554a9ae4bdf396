"""The service half of restlake: ``restlake serve``.

``api.create_app`` builds the FastAPI application (JSON API under ``/api/v1``, the live
dashboard at ``/``, OpenAPI at ``/openapi.json``, docs at ``/docs``); ``access`` holds the
API-key rule; ``problems`` the ``application/problem+json`` errors. Reads go through the
JVM-free read path (:mod:`framework.lake.reader`); writes use the control-store code the
command line uses, on the one Spark session the service keeps warm.
"""

from typing import Any

_EXPORTS = {"create_app": "framework.service.api", "ApiKeys": "framework.service.access"}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    # Lazy: importing the package must not import FastAPI (an optional extra).
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'framework.service' has no attribute {name!r}")
