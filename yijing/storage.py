"""Where uploaded files live: a small storage interface and its local-filesystem backend.

Keys are chosen by :mod:`yijing.services.media` (``<purpose>/<2 hex>/<random>.<ext>``), never by a
client. Another backend (an object store) plugs in by implementing :class:`Storage` and being set
with :func:`init_storage`.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from typing import Protocol

from flask import Flask, current_app

_KEY = re.compile(r"^[a-z]+/[0-9a-f]{2}/[A-Za-z0-9_-]{16,64}\.(?:jpg|png|webp)$")


class StorageError(Exception):
    """The backend failed to store, read or delete a file."""


class StoredFileMissing(StorageError):
    """No file under that key."""


class Storage(Protocol):
    def save(self, key: str, data: bytes, content_type: str) -> None:
        """Store ``data`` under ``key`` (replacing it), atomically: a reader sees all of it or nothing."""

    def load(self, key: str) -> bytes:
        """The bytes under ``key``; :class:`StoredFileMissing` when there are none."""

    def delete(self, key: str) -> None:
        """Remove ``key``; no error when it is already gone."""

    def public_url(self, key: str) -> str | None:
        """A URL the backend serves ``key`` from itself (a CDN), or None when the app serves it."""


class LocalStorage:
    """Files under a root directory (``MEDIA_ROOT``), written through a temporary file and a rename."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).resolve()

    def __repr__(self) -> str:
        return f"LocalStorage({str(self.root)!r})"

    def _path(self, key: str) -> Path:
        if not _KEY.match(key):
            raise StorageError(f"refusing storage key {key!r}")
        return self.root / key

    def save(self, key: str, data: bytes, content_type: str) -> None:
        path = self._path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".upload-")
            try:
                with os.fdopen(fd, "wb") as handle:
                    handle.write(data)
                    handle.flush()
                    os.fsync(handle.fileno())
                os.replace(tmp, path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except OSError as exc:
            raise StorageError(f"cannot store {key}: {type(exc).__name__}") from exc

    def load(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            raise StoredFileMissing(key) from None
        except OSError as exc:
            raise StorageError(f"cannot read {key}: {type(exc).__name__}") from exc

    def delete(self, key: str) -> None:
        try:
            self._path(key).unlink(missing_ok=True)
        except OSError as exc:
            raise StorageError(f"cannot delete {key}: {type(exc).__name__}") from exc

    def public_url(self, key: str) -> str | None:
        return None


def init_storage(app: Flask, storage: Storage | None = None) -> None:
    """Use ``storage`` for ``app`` (the local filesystem under ``MEDIA_ROOT`` when not given)."""
    app.extensions["yijing_storage"] = storage or LocalStorage(app.config["YIJING"].media_root)


def get_storage() -> Storage:
    """The app's storage (needs an app context); built on first use when not set up."""
    if "yijing_storage" not in current_app.extensions:
        init_storage(current_app._get_current_object())  # type: ignore[attr-defined]
    return current_app.extensions["yijing_storage"]
