"""Encryption at rest: the call fields that can hold prompt text, sealed with AES-256-GCM.

Sealed fields: a call's request, response, error text and metadata (caller labels, upstream
error bodies and fallback details can all echo the prompt), and a shadow result's answer. Every
backend's row mapping and the spool call `seal_text` / `open_text` here, so one format serves
them all:

    enc1:<key id>:<base64(12-byte nonce + ciphertext + 16-byte tag)>

The key id is the first 8 bytes (hex) of a SHA-256 of the key, so a row names the key that
sealed it without revealing it, and rotation can tell old rows from new. The associated data is
`<call id>/<field>`: a ciphertext moved to another row or column fails to authenticate.

Keys come from the environment or a file, never from the store: `PROTEGE_DATA_KEY` (base64 of 32
bytes), else the file named by `PROTEGE_DATA_KEY_FILE`, else the `key_file` the caller passes
(`[encryption] key_file` in protege.toml), else `$PROTEGE_HOME/data.key` if it exists. Old keys,
kept readable during `protege keys rotate-data`, come from `PROTEGE_OLD_DATA_KEY` (comma-separated)
or `PROTEGE_OLD_DATA_KEY_FILE`. Values written before encryption was turned on stay readable as
plain JSON until `protege keys rotate-data` seals them.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from protege.store.base import protege_home

PREFIX = "enc1:"
KEY_ENV = "PROTEGE_DATA_KEY"
KEY_FILE_ENV = "PROTEGE_DATA_KEY_FILE"
OLD_KEY_ENV = "PROTEGE_OLD_DATA_KEY"
OLD_KEY_FILE_ENV = "PROTEGE_OLD_DATA_KEY_FILE"
DEFAULT_KEY_FILE = "data.key"
NEW_KEY_COMMAND = "protege keys new-data-key --out $PROTEGE_HOME/data.key"
SEALED_FIELDS = ("request", "response", "error", "metadata")
"""The CallRecord fields that are sealed (in the store and in the spool)."""


class DataKeyError(RuntimeError):
    """The data key is missing, malformed or not the one the data was sealed with; the message names the fix."""


def _aesgcm():
    try:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    except ImportError as e:  # pragma: no cover - `cryptography` comes with protege[serve]
        raise DataKeyError("Encryption at rest needs the `cryptography` package. Fix: pip install 'protege[serve]'") from e
    return AESGCM


def key_id(key: bytes) -> str:
    return hashlib.sha256(b"protege-data-key\0" + key).hexdigest()[:16]


def parse_key(text: str, where: str) -> bytes:
    """A 32-byte key from its base64 text; `where` (an env var or a file) is named in the error."""
    try:
        key = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if len(key) != 32:
        raise DataKeyError(f"The data key in {where} is not base64 of 32 bytes. Create a valid one with "
                           f"`{NEW_KEY_COMMAND}` (or `openssl rand -base64 32`).")
    return key


def new_key_text() -> str:
    return base64.b64encode(secrets.token_bytes(32)).decode()


def _read_key_file(path: str | os.PathLike, what: str) -> bytes:
    try:
        text = Path(path).read_text()
    except OSError as e:
        raise DataKeyError(f"Cannot read the data key file {path} ({what}): {e.strerror or e}. Point {what} at a "
                           f"readable file, or create one with `{NEW_KEY_COMMAND}`.") from e
    return parse_key(text, f"the file {path}")


@dataclass
class DataCipher:
    """Seals with the current key; opens with the current key or any old one."""

    key: bytes = field(repr=False)
    old_keys: list[bytes] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        AESGCM = _aesgcm()
        self.key_id = key_id(self.key)
        self._current = AESGCM(self.key)
        self._by_id = {key_id(k): AESGCM(k) for k in [*self.old_keys, self.key]}

    @property
    def key_ids(self) -> set[str]:
        return set(self._by_id)

    def seal(self, data: bytes, aad: str) -> str:
        nonce = secrets.token_bytes(12)
        blob = nonce + self._current.encrypt(nonce, data, aad.encode())
        return f"{PREFIX}{self.key_id}:{base64.b64encode(blob).decode()}"

    def open(self, text: str, aad: str) -> bytes:
        kid, _, body = text[len(PREFIX):].partition(":")
        aes = self._by_id.get(kid)
        if aes is None:
            raise DataKeyError(wrong_key_message({kid}, self.key_ids))
        try:
            blob = base64.b64decode(body)
            return aes.decrypt(blob[:12], blob[12:], aad.encode())
        except Exception as e:  # InvalidTag, or a truncated value
            raise DataKeyError(f"The stored {aad} does not authenticate under key {kid}: the database or spool was "
                               "modified or damaged. Restore it from a backup; the other calls are unaffected.") from e


_SEALED = re.compile(r"enc1:[0-9a-f]{16}:[A-Za-z0-9+/]+={0,2}")


def is_sealed(text: object) -> bool:
    """Whether `text` is a sealed value (a plaintext error message that merely starts with "enc1:" is not)."""
    return isinstance(text, str) and text.startswith(PREFIX) and _SEALED.fullmatch(text) is not None


def seal_text(cipher: DataCipher | None, text: str | None, call_id: str, name: str) -> str | None:
    """`text` as stored: sealed when a cipher is given, else as is. None stays None."""
    if text is None or cipher is None:
        return text
    return cipher.seal(text.encode(), f"{call_id}/{name}")


def open_text(cipher: DataCipher | None, text: str | None, call_id: str, name: str) -> str | None:
    """The inverse of `seal_text`; plaintext written before encryption was on passes through."""
    if not is_sealed(text):
        return text
    if cipher is None:
        raise DataKeyError(missing_key_message())
    return cipher.open(text, f"{call_id}/{name}").decode()


def sealed_key_id(text: str | None) -> str | None:
    return text[len(PREFIX):].partition(":")[0] if is_sealed(text) else None


def missing_key_message(key_ids: set[str] | None = None) -> str:
    which = f" (key {', '.join(sorted(key_ids))})" if key_ids else ""
    return (f"The call log is encrypted{which} but no data key is set. Fix: export {KEY_ENV}=<base64 key>, or "
            f"{KEY_FILE_ENV}=<file>, or set [encryption] key_file in protege.toml, or put the key in "
            f"$PROTEGE_HOME/{DEFAULT_KEY_FILE}.")


def wrong_key_message(needed: set[str], have: set[str]) -> str:
    return (f"The call log has data sealed with key {', '.join(sorted(needed))}, but the data key given is "
            f"{', '.join(sorted(have))}. Fix: set {KEY_ENV} (or {KEY_FILE_ENV}) to the key the log was written "
            f"with; to change keys, keep the old one in {OLD_KEY_ENV} (or {OLD_KEY_FILE_ENV}) and run "
            "`protege keys rotate-data`.")


def check_keys(required: set[str], cipher: DataCipher | None) -> None:
    """Refuse to open a store whose sealed data needs keys we do not have (a store opened without its key
    would otherwise write new calls in plaintext)."""
    if not required:
        return
    if cipher is None:
        raise DataKeyError(missing_key_message(required))
    if required - cipher.key_ids:
        raise DataKeyError(wrong_key_message(required - cipher.key_ids, cipher.key_ids))


def load_cipher(key_file: str | os.PathLike | None = None) -> DataCipher | None:
    """The data cipher from the environment, `key_file` or `$PROTEGE_HOME/data.key`; None when no key is set."""
    if os.environ.get(KEY_ENV):
        key = parse_key(os.environ[KEY_ENV], f"${KEY_ENV}")
    elif os.environ.get(KEY_FILE_ENV):
        key = _read_key_file(os.environ[KEY_FILE_ENV], f"${KEY_FILE_ENV}")
    elif key_file:
        key = _read_key_file(key_file, "[encryption] key_file in protege.toml")
    elif (protege_home() / DEFAULT_KEY_FILE).is_file():
        key = _read_key_file(protege_home() / DEFAULT_KEY_FILE, f"$PROTEGE_HOME/{DEFAULT_KEY_FILE}")
    else:
        if os.environ.get(OLD_KEY_ENV) or os.environ.get(OLD_KEY_FILE_ENV):
            raise DataKeyError(f"{OLD_KEY_ENV} is set but there is no new data key: set {KEY_ENV} (or "
                               f"{KEY_FILE_ENV}) to the new key as well.")
        return None
    old = [parse_key(part, f"${OLD_KEY_ENV}") for part in os.environ.get(OLD_KEY_ENV, "").split(",") if part.strip()]
    if os.environ.get(OLD_KEY_FILE_ENV):
        old.append(_read_key_file(os.environ[OLD_KEY_FILE_ENV], f"${OLD_KEY_FILE_ENV}"))
    return DataCipher(key, [k for k in old if k != key])


def sealed_record(cipher: DataCipher | None, record) -> dict | object:
    """A CallRecord as the spool writes it: with a cipher, a dict whose `SEALED_FIELDS` are sealed text (JSON
    values are serialised first); without one, the record itself (orjson serialises it directly)."""
    if cipher is None:
        return record
    import orjson

    d = dict(vars(record))
    for name in SEALED_FIELDS:
        value = d[name]
        if value is not None:
            d[name] = seal_text(cipher, value if name == "error" else orjson.dumps(value).decode(), record.id, name)
    return d


def opened_record(cipher: DataCipher | None, d: dict) -> dict:
    """The inverse of `sealed_record` on a spool line's dict (plaintext lines pass through)."""
    import orjson

    for name in SEALED_FIELDS:
        value = d.get(name)
        if is_sealed(value):
            text = open_text(cipher, value, str(d.get("id")), name)
            d[name] = text if name == "error" else orjson.loads(text)
    return d
