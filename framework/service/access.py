"""Who may call the service: API keys given as secret references, compared in constant time.

``RESTLAKE_API_KEYS`` holds one or more secret references separated by commas
(``env:RESTLAKE_KEY_OPS,file:/run/secrets/restlake_key``); each resolves to one key. A
request sends its key as ``X-API-Key``. Every POST needs a key; reads need one too,
unless the service is bound to a loopback address and started with ``--public-read``.
A key is never logged or echoed: a rejected request is logged with its method, path and
client only.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import os
from typing import Iterable, Optional

from framework.errors import ConfigError
from framework.secrets import is_reference, resolve

log = logging.getLogger(__name__)

KEYS_ENV = "RESTLAKE_API_KEYS"
HEADER = "X-API-Key"


class ApiKeys:
    """The keys a service accepts.

    Args:
        keys: the key values (already resolved).
        references: the references they came from (shown in ``repr``, never the values).
    """

    def __init__(self, keys: Iterable[str] = (), references: Iterable[str] = ()) -> None:
        self._keys = tuple(k.encode("utf-8") for k in keys if k)
        self.references = tuple(references)

    @classmethod
    def from_references(cls, text: Optional[str]) -> "ApiKeys":
        """Resolve ``env:…,file:…`` (the value of ``RESTLAKE_API_KEYS``).

        Raises:
            ConfigError: an item is not a secret reference, or does not resolve.
        """
        refs = [part.strip() for part in (text or "").split(",") if part.strip()]
        for ref in refs:
            if not is_reference(ref):
                raise ConfigError("expected secret references (env:NAME, file:PATH or "
                                  "databricks:SCOPE/KEY) separated by commas, not key values",
                                  field=KEYS_ENV)
        return cls([resolve(ref, field=KEYS_ENV) for ref in refs], refs)

    @classmethod
    def from_env(cls) -> "ApiKeys":
        return cls.from_references(os.environ.get(KEYS_ENV))

    def __bool__(self) -> bool:
        return bool(self._keys)

    def __len__(self) -> int:
        return len(self._keys)

    def accepts(self, presented: Optional[str]) -> bool:
        """True when ``presented`` equals one of the keys (every key compared, constant time)."""
        if not presented:
            return False
        given = presented.encode("utf-8")
        ok = False
        for key in self._keys:
            ok |= hmac.compare_digest(given, key)
        return ok

    def __repr__(self) -> str:
        return f"ApiKeys({len(self._keys)} keys from {', '.join(self.references) or 'nothing'})"


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1)."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
