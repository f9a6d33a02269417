"""Personal information under PIPL: authenticated encryption with key ids, blind indexes, masks.

A stored value looks like ``k2:<base64 nonce+ciphertext>``; the key id lets keys rotate
(``flask yijing rotate-pii-keys`` re-encrypts). Look-ups and uniqueness use a keyed HMAC of the
normalised value, never the clear value.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from yijing.config import Config, settings


class PIIError(ValueError):
    """A stored value cannot be decrypted (unknown key id or tampered)."""


def encrypt(clear: str, *, context: str, config: Config | None = None) -> str:
    """Encrypt ``clear``; ``context`` (e.g. ``volunteer.id_number``) is bound as associated data."""
    config = config or settings()
    key_id = config.pii_active_key_id
    nonce = os.urandom(12)
    sealed = AESGCM(config.pii_keys[key_id]).encrypt(nonce, clear.encode(), context.encode())
    return f"{key_id}:{base64.b64encode(nonce + sealed).decode()}"


def decrypt(stored: str, *, context: str, config: Config | None = None) -> str:
    config = config or settings()
    key_id, sep, payload = stored.partition(":")
    if not sep or key_id not in config.pii_keys:
        raise PIIError(f"no key {key_id!r} to decrypt this value")
    raw = base64.b64decode(payload)
    try:
        clear = AESGCM(config.pii_keys[key_id]).decrypt(raw[:12], raw[12:], context.encode())
    except InvalidTag:
        raise PIIError("value fails authentication") from None
    return clear.decode()


def key_id_of(stored: str) -> str:
    return stored.partition(":")[0]


def reencrypt(stored: str, *, context: str, config: Config | None = None) -> str:
    """The value under the active key (unchanged when it already is)."""
    config = config or settings()
    if key_id_of(stored) == config.pii_active_key_id:
        return stored
    return encrypt(decrypt(stored, context=context, config=config), context=context, config=config)


def blind_index(clear: str, *, context: str, config: Config | None = None) -> str:
    """A keyed hash for equality look-ups; normalised so ``x`` and ``X`` in an ID number match."""
    config = config or settings()
    message = f"{context}\x00{clear.strip().upper()}".encode()
    return hmac.new(config.pii_hash_key, message, hashlib.sha256).hexdigest()


def mask_name(name: str) -> str:
    """张三 → 张*, 张小三 → 张*三, 欧阳小明 → 欧**明."""
    name = name.strip()
    if len(name) <= 1:
        return "*"
    if len(name) == 2:
        return name[0] + "*"
    return name[0] + "*" * (len(name) - 2) + name[-1]


def mask_id_number(id_number: str) -> str:
    """150203199001011234 → 150***********1234."""
    if len(id_number) < 8:
        return "*" * len(id_number)
    return id_number[:3] + "*" * (len(id_number) - 7) + id_number[-4:]


def mask_phone(phone: str) -> str:
    """13812345678 → 138****5678."""
    if len(phone) < 7:
        return "*" * len(phone)
    return phone[:3] + "*" * (len(phone) - 7) + phone[-4:]
