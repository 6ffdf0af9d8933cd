"""Signing webhook deliveries, and checking a signature the way a receiver would.

Two schemes:

- `fleetit` (as FleetIT signs its own webhooks): `X-Timestamp` is Unix time in whole seconds,
  `X-Signature` the lowercase hex HMAC-SHA256 of `"{timestamp}.{raw body}"` keyed with the
  secret's UTF-8 bytes.
- `standard-webhooks` (standardwebhooks.com): `webhook-id`, `webhook-timestamp` and
  `webhook-signature: v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`, keyed with the
  base64-decoded `whsec_…` secret.

Both carry `X-Logd-Delivery`, the delivery id, the same on every retry.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from typing import Literal

Scheme = Literal["fleetit", "standard-webhooks"]
SCHEMES: tuple[Scheme, ...] = ("fleetit", "standard-webhooks")

#: Headers logd sets itself; a webhook's `headers` may not replace them.
RESERVED_HEADERS = frozenset(
    {
        "content-type",
        "content-length",
        "host",
        "x-timestamp",
        "x-signature",
        "x-logd-delivery",
        "webhook-id",
        "webhook-timestamp",
        "webhook-signature",
    }
)


def _hmac(key: bytes, message: bytes) -> bytes:
    return hmac.new(key, message, hashlib.sha256).digest()


def fleetit_signature(secret: str, timestamp: int, body: bytes) -> str:
    """Lowercase hex HMAC-SHA256 of `"{timestamp}.{body}"`."""
    return _hmac(secret.encode(), f"{timestamp}.".encode() + body).hex()


def standard_secret_bytes(secret: str) -> bytes:
    """The HMAC key of a Standard Webhooks secret: base64 after an optional `whsec_` prefix."""
    encoded = secret.removeprefix("whsec_")
    try:
        key = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(
            "a standard-webhooks secret must be base64, optionally prefixed with whsec_"
        ) from None
    if len(key) < 16:
        raise ValueError("a standard-webhooks secret must decode to at least 16 bytes")
    return key


def standard_signature(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """`v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`."""
    digest = _hmac(standard_secret_bytes(secret), f"{msg_id}.{timestamp}.".encode() + body)
    return "v1," + base64.b64encode(digest).decode()


def sign(
    scheme: Scheme, secret: str, delivery_id: str, timestamp: int, body: bytes
) -> dict[str, str]:
    """The signature headers for one attempt of a delivery."""
    headers = {"X-Logd-Delivery": delivery_id}
    if scheme == "fleetit":
        headers["X-Timestamp"] = str(timestamp)
        headers["X-Signature"] = fleetit_signature(secret, timestamp, body)
    else:
        headers["webhook-id"] = delivery_id
        headers["webhook-timestamp"] = str(timestamp)
        headers["webhook-signature"] = standard_signature(secret, delivery_id, timestamp, body)
    return headers


def verify(
    scheme: Scheme,
    secret: str,
    body: bytes,
    timestamp: str | int,
    signature: str,
    msg_id: str | None = None,
) -> bool:
    """True when `signature` signs `body` at `timestamp` with `secret` (constant-time compare)."""
    try:
        ts = int(str(timestamp).strip())
    except ValueError:
        return False
    if scheme == "fleetit":
        return hmac.compare_digest(fleetit_signature(secret, ts, body), signature.strip().lower())
    if not msg_id:
        return False
    try:
        expected = standard_signature(secret, msg_id, ts, body).encode()
    except ValueError:
        return False
    # The header may carry several space-separated signatures (during a key rotation).
    return any(hmac.compare_digest(expected, part.encode()) for part in signature.split())
