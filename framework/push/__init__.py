"""Push sources: webhooks received, verified, spooled durably and flushed to Delta.

``signatures`` checks GitHub, Stripe and plain HMAC-SHA256 signatures (pure);
``spool`` is the fsync'd append-only event log of one source (no Spark); ``flush``
writes a batch of spooled events through the pull loads' parser, staging and writer
(Spark edge); ``receiver`` ties them together behind ``POST /hooks/<config_id>``
(:mod:`framework.service.hooks`), served by ``restlake receive`` and ``restlake serve``.
"""

from typing import Any

_EXPORTS = {
    "Receiver": "framework.push.receiver", "ReceiveError": "framework.push.receiver",
    "Spool": "framework.push.spool", "SpoolFull": "framework.push.spool",
    "Verifier": "framework.push.signatures", "SignatureError": "framework.push.signatures",
    "sign": "framework.push.signatures", "flush_events": "framework.push.flush",
    "FlushResult": "framework.push.flush",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    # Lazy, like framework.load: importing the package imports no Spark.
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'framework.push' has no attribute {name!r}")
