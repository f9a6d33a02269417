"""Image uploads: recognised by content, limited in bytes and pixels, re-encoded without metadata.

A photo straight from a phone carries EXIF: the camera, the time and often the GPS position of the
place it was taken, which for a clue may be the reporter's home. Every upload is decoded and encoded
again from its pixels alone, so nothing but the picture survives. Files are kept through
:mod:`yijing.storage` under a random key; the row says who owns the image and what it is for.

Other features attach images with :func:`take` (in their own transaction) and show them with
:func:`public_url` (feed) or :func:`content_url`.
"""

from __future__ import annotations

import base64
import hashlib
import io
import logging
import secrets
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta

from PIL import Image, ImageOps, UnidentifiedImageError
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from yijing import policies
from yijing.config import settings
from yijing.errors import DomainError, InvalidInput, NotFound, ServiceUnavailable
from yijing.extensions import db
from yijing.models import Media, MediaPurpose
from yijing.models.base import utcnow
from yijing.policies import Permission, Principal
from yijing.storage import StorageError, StoredFileMissing, get_storage

log = logging.getLogger(__name__)

# Pillow format name → (content type, file extension). Nothing else is accepted.
FORMATS: dict[str, tuple[str, str]] = {
    "JPEG": ("image/jpeg", "jpg"),
    "PNG": ("image/png", "png"),
    "WEBP": ("image/webp", "webp"),
}
JPEG_QUALITY = 85
WEBP_QUALITY = 85
URL_PREFIX = "/api/v1/media/"

#: Who may see a photo of a purpose other than the feed: ``rule(media_id, principal, tracking_code)``.
#: The service that owns the purpose registers its rule when it is imported (clues does, for clue
#: photos), so that media, which clues uses to store photos, never imports clues (no cycle).
ViewerRule = Callable[[int, "Principal | None", "str | None"], bool]
_VIEWERS: dict[MediaPurpose, ViewerRule] = {}


class FileTooLarge(DomainError):
    status = 413
    code = "file_too_large"
    message = "图片太大了"


@dataclass(frozen=True)
class CleanImage:
    data: bytes
    content_type: str
    extension: str
    width: int
    height: int


def _not_an_image() -> InvalidInput:
    return InvalidInput(
        "文件不是可识别的图片，请上传 JPEG、PNG 或 WebP 格式的照片",
        code="unsupported_image",
        fields={"file": ["只支持 JPEG、PNG、WebP 图片"]},
    )


def _too_many_pixels(max_pixels: int) -> InvalidInput:
    megapixels = max_pixels / 1_000_000
    return InvalidInput(
        f"图片分辨率过大（超过 {megapixels:g} 百万像素），请压缩后再上传",
        code="image_too_many_pixels",
        fields={"file": ["分辨率过大"]},
    )


def clean_image(data: bytes, *, max_bytes: int, max_pixels: int, max_dimension: int) -> CleanImage:
    """Decode ``data`` as a JPEG, PNG or WebP and encode it again from its pixels only.

    Refused: an empty or oversized file, anything that is not one of those formats whatever its
    name, a broken image, and an image with more pixels than ``max_pixels`` (a decompression bomb
    is refused from its header, before anything is decoded). The result is turned upright (EXIF
    orientation), scaled down to ``max_dimension`` on its long side, and has no EXIF, GPS, ICC or
    text metadata.
    """
    if not data:
        raise InvalidInput("没有收到图片文件", code="empty_file", fields={"file": ["必填"]})
    if len(data) > max_bytes:
        raise FileTooLarge(
            f"图片不能超过 {max_bytes / 1024 / 1024:g} MB，请压缩后再上传",
            fields={"file": ["文件过大"]},
        )
    try:
        with warnings.catch_warnings():
            # Pillow warns past Image.MAX_IMAGE_PIXELS and raises past twice that: refuse both.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=list(FORMATS))
            fmt = image.format or ""
            width, height = image.size
            if width <= 0 or height <= 0:
                raise _not_an_image()
            if width * height > max_pixels:
                raise _too_many_pixels(max_pixels)
            if fmt == "JPEG":
                image.draft("RGB", (max_dimension, max_dimension))  # decode at a reduced scale
            image.load()
            image = ImageOps.exif_transpose(image)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise _too_many_pixels(max_pixels) from None
    except UnidentifiedImageError:
        raise _not_an_image() from None
    except (OSError, SyntaxError, ValueError, EOFError):
        raise InvalidInput(
            "图片已损坏或不完整，请重新选择照片", code="broken_image", fields={"file": ["图片已损坏"]}
        ) from None
    if fmt not in FORMATS:
        raise _not_an_image()

    has_alpha = image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info)
    target_mode = "RGBA" if has_alpha and fmt != "JPEG" else "RGB"
    pixels = image.convert(target_mode)
    if max(pixels.size) > max_dimension:
        pixels.thumbnail((max_dimension, max_dimension), Image.Resampling.LANCZOS)
    pixels.info = {}  # nothing from the original file travels on (ICC, text chunks, XMP, comments)

    out = io.BytesIO()
    if fmt == "JPEG":
        pixels.save(out, "JPEG", quality=JPEG_QUALITY, optimize=True, exif=b"")
    elif fmt == "PNG":
        pixels.save(out, "PNG", optimize=False)
    else:
        pixels.save(out, "WEBP", quality=WEBP_QUALITY, method=4, exif=b"")
    content_type, extension = FORMATS[fmt]
    return CleanImage(out.getvalue(), content_type, extension, pixels.size[0], pixels.size[1])


def _storage_key(purpose: str, key: str, extension: str) -> str:
    shard = hashlib.sha256(key.encode()).hexdigest()[:2]
    return f"{purpose}/{shard}/{key}.{extension}"


UPLOAD_KEY_CONTEXT = "media.upload"


def _key_for(principal: Principal, purpose: str, idempotency_key: str | None) -> str:
    """The image's public key: random, or derived from the uploader and their ``Idempotency-Key``.

    A derived key makes a retried upload find the image of its first attempt without anything that
    ties the uploader to the key being stored (an image on an anonymous clue stays anonymous).
    """
    if idempotency_key is None:
        return secrets.token_urlsafe(16)
    if not idempotency_key.strip() or len(idempotency_key) > 128:
        raise InvalidInput(
            "Idempotency-Key 应为 1 到 128 个字符", fields={"Idempotency-Key": ["长度不符合要求"]}
        )
    from yijing import pii

    seed = f"{principal.user_id}:{purpose}:{idempotency_key.strip()}"
    digest = bytes.fromhex(pii.blind_index(seed, context=UPLOAD_KEY_CONTEXT))[:16]
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def upload(
    principal: Principal, purpose: str, data: bytes, idempotency_key: str | None = None
) -> tuple[Media, bool]:
    """Check, clean and store an image for ``purpose``; nothing is kept when anything fails.

    Clue photos may be uploaded by anyone logged in; feed images only by staff who may publish.
    Returns the image and whether it is a replay: the same ``idempotency_key`` with the same image
    answers with the first upload (422 ``idempotency_key_reused`` with another image).
    """
    if purpose not in set(MediaPurpose):
        raise InvalidInput("图片用途无效", fields={"purpose": ["取值不在允许范围内：clue, feed"]})
    if purpose == MediaPurpose.FEED:
        policies.require_somewhere(principal, Permission.FEED_PUBLISH)
    config = settings()
    clean = clean_image(
        data,
        max_bytes=config.media_max_bytes,
        max_pixels=config.media_max_pixels,
        max_dimension=config.media_max_dimension,
    )
    key = _key_for(principal, purpose, idempotency_key)
    sha256 = hashlib.sha256(clean.data).hexdigest()
    if idempotency_key is not None:
        replay = _replay(key, sha256)
        if replay is not None:
            return replay, True
    # A random file name even for a derived key: a racing retry never overwrites the first file.
    storage_key = _storage_key(purpose, f"{key}-{secrets.token_hex(4)}", clean.extension)
    storage = get_storage()
    try:
        storage.save(storage_key, clean.data, clean.content_type)
    except StorageError:
        log.exception("media store failed")
        raise ServiceUnavailable("图片保存失败，请稍后重试", code="storage_unavailable") from None
    media = Media(
        key=key,
        purpose=purpose,
        owner_id=principal.user_id,
        content_type=clean.content_type,
        size_bytes=len(clean.data),
        width=clean.width,
        height=clean.height,
        storage_key=storage_key,
        sha256=sha256,
    )
    try:
        db.session.add(media)
        db.session.commit()
    except Exception as exc:
        db.session.rollback()
        _delete_quietly(storage_key)
        replay = (
            _replay(key, sha256) if idempotency_key is not None and isinstance(exc, IntegrityError) else None
        )
        if replay is None:
            raise
        return replay, True  # the same retried request won the race
    return media, False


def _replay(key: str, sha256: str) -> Media | None:
    media = db.session.scalar(select(Media).where(Media.key == key))
    if media is None:
        return None
    if media.sha256 != sha256:
        raise InvalidInput(
            "这个 Idempotency-Key 已用于另一张图片，请为新的上传换一个", code="idempotency_key_reused"
        )
    return media


def _delete_quietly(storage_key: str) -> None:
    try:
        get_storage().delete(storage_key)
    except StorageError:
        log.warning("could not delete a stored file; the orphan purge will retry")


def take(
    owner_id: int, keys: Sequence[str], purpose: str, *, limit: int, field: str = "photos"
) -> list[Media]:
    """Attach the owner's unattached images of ``purpose`` in the caller's transaction, in order.

    Raises 422 (naming ``field``) for an unknown key, someone else's image, an image for another
    purpose, one already used, a key given twice, or more than ``limit`` images.
    """
    keys = list(keys)
    if not keys:
        return []
    if len(keys) > limit:
        raise InvalidInput(
            f"最多上传 {limit} 张图片", code="too_many_images", fields={field: [f"最多 {limit} 张"]}
        )
    if len(set(keys)) != len(keys):
        raise InvalidInput("同一张图片不能重复提交", code="duplicate_image", fields={field: ["有重复的图片"]})
    found = {m.key: m for m in db.session.scalars(select(Media).where(Media.key.in_(keys)))}
    for key in keys:
        media = found.get(key)
        if media is None or media.owner_id != owner_id or media.purpose != purpose:
            raise InvalidInput(
                "图片不存在或不属于您，请重新上传", code="invalid_image", fields={field: [f"图片 {key} 无效"]}
            )
        if media.attached_at is not None:
            raise InvalidInput(
                "图片已被使用，请重新上传", code="image_in_use", fields={field: [f"图片 {key} 已被使用"]}
            )
    ids = [found[k].id for k in keys]
    taken = db.session.execute(
        update(Media)
        .where(Media.id.in_(ids), Media.attached_at.is_(None))
        .values(attached_at=utcnow())
        .execution_options(synchronize_session=False)
    ).rowcount
    if taken != len(ids):
        raise InvalidInput("图片已被使用，请重新上传", code="image_in_use", fields={field: ["图片已被使用"]})
    for media in found.values():
        db.session.refresh(media)
    return [found[k] for k in keys]


def register_viewer(purpose: MediaPurpose, rule: ViewerRule) -> None:
    """Declare who may see a photo of ``purpose`` (nobody but its uploader until a rule is registered)."""
    _VIEWERS[purpose] = rule


def content_url(media: Media) -> str:
    """Where the API serves the image (authorised per request for clue photos)."""
    return URL_PREFIX + media.key


def public_url(media: Media) -> str:
    """The public address of a feed image (the storage's own URL when it serves files itself)."""
    if media.purpose != MediaPurpose.FEED:
        raise ValueError("only feed images have a public URL")
    return get_storage().public_url(media.storage_key) or content_url(media)


def _may_see(media: Media, principal: Principal | None, tracking_code: str | None) -> bool:
    if media.purpose == MediaPurpose.FEED:
        return True
    if principal is not None and media.owner_id == principal.user_id:
        return True
    rule = _VIEWERS.get(media.purpose)
    return rule is not None and rule(media.id, principal, tracking_code)


def content(principal: Principal | None, key: str, tracking_code: str | None = None) -> tuple[Media, bytes]:
    """The image and its bytes, if the requester may see it; 404 otherwise (the key stays secret).

    Feed images are public. A clue photo is shown to its uploader, to the clue's reporter (logged
    in or holding the tracking code) and to staff who may triage the clue.
    """
    media = db.session.scalar(select(Media).where(Media.key == key)) if len(key) <= 32 else None
    if media is None:
        raise NotFound("图片不存在", code="media_not_found")
    if not _may_see(media, principal, tracking_code):
        # The same answer as for a key that does not exist: nobody learns that a photo is there.
        raise NotFound("图片不存在", code="media_not_found")
    try:
        data = get_storage().load(media.storage_key)
    except StoredFileMissing:
        log.error("media file missing", extra={"media_id": media.id})
        raise NotFound("图片不存在", code="media_not_found") from None
    except StorageError:
        log.exception("media read failed")
        raise ServiceUnavailable("图片暂时无法读取，请稍后重试", code="storage_unavailable") from None
    return media, data


def purge_orphans(older_than: timedelta, batch: int = 500) -> int:
    """Delete uploads nobody attached within ``older_than`` (their files first, then the rows)."""
    cutoff = utcnow() - older_than
    orphans = db.session.scalars(
        select(Media).where(Media.attached_at.is_(None), Media.created_at < cutoff).limit(batch)
    ).all()
    removed = 0
    for media in orphans:
        try:
            get_storage().delete(media.storage_key)
        except StorageError:
            log.warning("could not delete an orphan file; will retry", extra={"media_id": media.id})
            continue
        db.session.delete(media)
        removed += 1
    db.session.commit()
    return removed
