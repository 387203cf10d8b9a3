"""Canonical JSON and content hashes: the identity of a rule version.

The canonical form is documented so anyone can recompute a hash without heurmetrics:
``json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)``
encoded as UTF-8. A rule version's ``content_hash`` is the hex sha256 of the canonical JSON of
``{"params": params, "source": source}``.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any


def canonical_json(obj: Any) -> str:
    """Serialise ``obj`` deterministically; NaN/inf are refused (they have no JSON form)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def content_hash(params: dict[str, Any], source: str) -> str:
    """The content hash of a rule version: sha256 of canonical ``{"params":…, "source":…}``."""
    return sha256_hex(canonical_json({"params": params, "source": source}))
