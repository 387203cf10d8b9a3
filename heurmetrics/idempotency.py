"""The ``Idempotency-Key`` request header: which delivery (batch) a ``POST /v1/executions`` belongs to.

The SDK sends the same key on every attempt of one batch. The exporter passes it to
:meth:`heurmetrics.ingest.Ingest.write_executions` as the delivery id, so a re-sent batch whose
first attempt was committed but not counted (the answer to COMMIT was lost) is counted by the
re-send, and one that was counted is not counted again.
"""

from __future__ import annotations

import uuid
from typing import Final

IDEMPOTENCY_HEADER: Final = "Idempotency-Key"
MAX_KEY_LENGTH: Final = 255
_NAMESPACE: Final = uuid.UUID("0b7a4a52-3c1e-4d7e-8f55-7f0d8f1e9c21")


def idempotency_key(value: str | None) -> uuid.UUID | None:
    """The delivery id of a header value: a UUID as such, any other key hashed into one.

    Raises :class:`ValueError` for a key longer than 255 characters or with control characters.
    """
    if value is None:
        return None
    if not value or len(value) > MAX_KEY_LENGTH or not value.isprintable():
        raise ValueError(f"{IDEMPOTENCY_HEADER} must be 1 to {MAX_KEY_LENGTH} printable characters")
    try:
        return uuid.UUID(value)
    except ValueError:
        return uuid.uuid5(_NAMESPACE, value)
