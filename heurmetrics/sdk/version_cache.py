"""The local cache of registered rule versions that lets a runner start while the database is down."""

from __future__ import annotations

import logging
import threading
from datetime import datetime
from typing import Any

from heurmetrics.canonical import content_hash
from heurmetrics.domain import RuleVersion
from heurmetrics.sdk.spool import Spool

log = logging.getLogger("heurmetrics.sdk")

__all__ = ["VersionCache"]


class VersionCache:
    """Rule versions registered through one spool, so a runner can start while the database is down.

    Kept in the spool directory (state document ``versions``, rewritten atomically). A cached
    version is only returned for identical content (same content hash of params and source),
    never as a guess.
    """

    def __init__(self, spool: Spool) -> None:
        self._spool = spool
        self._lock = threading.Lock()
        stored = spool.load_state("versions")
        self._items: dict[str, dict[str, Any]] = stored if isinstance(stored, dict) else {}

    def remember(self, rv: RuleVersion) -> None:
        entry = {
            "id": rv.id,
            "content_hash": rv.content_hash,
            "created_at": rv.created_at.isoformat(),
            "created_by": rv.created_by,
            "description": rv.description,
        }
        key = f"{rv.rule}@{rv.version}"
        with self._lock:
            if self._items.get(key) == entry:
                return
            self._items[key] = entry
            try:
                self._spool.save_state("versions", self._items)
            except OSError as exc:  # the cache is a convenience: never fail a registration for it
                log.warning("cannot save the rule-version cache in %s: %s", self._spool.directory, exc)

    def lookup(self, rule: str, version: str, params: dict[str, Any], source: str) -> RuleVersion | None:
        """The cached version ``rule@version`` if its content hash matches params and source."""
        entry = self._items.get(f"{rule}@{version}")
        if entry is None:
            return None
        try:
            if entry["content_hash"] != content_hash(params, source):
                return None
            created_at = datetime.fromisoformat(entry["created_at"])
            return RuleVersion(
                id=int(entry["id"]),
                rule=rule,
                version=version,
                content_hash=entry["content_hash"],
                params=params,
                source=source,
                created_at=created_at,
                created_by=str(entry.get("created_by") or ""),
                description=entry.get("description"),
            )
        except (KeyError, TypeError, ValueError):
            return None
