"""Image upload through HTTP: recognised by content, cleaned of metadata, refused when unsafe,
served only to those who may see it."""

from __future__ import annotations

import io
import struct
import zlib
from datetime import timedelta

import pytest
from PIL import ExifTags, Image
from sqlalchemy import func, select, update


def _image(fmt: str = "JPEG", size: tuple[int, int] = (64, 48), exif: Image.Exif | None = None) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (30, 120, 200)).save(buffer, fmt, **({"exif": exif} if exif is not None else {}))
    return buffer.getvalue()


def _png(width: int, height: int) -> bytes:
    """A real 1-bit PNG of ``width`` × ``height`` black pixels: tiny on disk, huge once decoded."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    row = b"\x00" * (1 + (width + 7) // 8)
    compressor = zlib.compressobj(9)
    parts = []
    rows_per_block = 1000
    for start in range(0, height, rows_per_block):
        parts.append(compressor.compress(row * min(rows_per_block, height - start)))
    parts.append(compressor.flush())
    signature = b"\x89PNG\r\n\x1a\n"
    return signature + chunk(b"IHDR", header) + chunk(b"IDAT", b"".join(parts)) + chunk(b"IEND", b"")


def _gps_exif() -> Image.Exif:
    exif = Image.Exif()
    exif[ExifTags.Base.Make] = "PhoneMaker"
    exif[ExifTags.Base.Model] = "Model X"
    exif[ExifTags.Base.Orientation] = 6  # rotated: the stored image is turned upright
    exif[ExifTags.Base.GPSInfo] = {
        ExifTags.GPS.GPSLatitudeRef: "N",
        ExifTags.GPS.GPSLatitude: (40.0, 39.0, 8.28),
        ExifTags.GPS.GPSLongitudeRef: "E",
        ExifTags.GPS.GPSLongitude: (109.0, 49.0, 59.16),
    }
    return exif


def _stored(app, root) -> tuple[int, list]:
    from yijing.extensions import db
    from yijing.models import Media

    with app.app_context():
        count = db.session.scalar(select(func.count()).select_from(Media))
        db.session.remove()
    files = [p for p in root.rglob("*") if p.is_file()] if root.exists() else []
    return count, files


def test_jpeg_with_gps_exif_comes_back_without_any_metadata(
    client, wechat_login, upload_image, media_storage
):
    original = _image("JPEG", (64, 48), exif=_gps_exif())
    assert Image.open(io.BytesIO(original)).getexif().get_ifd(ExifTags.IFD.GPSInfo)  # the input has GPS
    headers = wechat_login("amy")

    response = upload_image(headers, original)

    assert response.status_code == 201, response.get_json()
    body = response.get_json()
    assert body["content_type"] == "image/jpeg"
    assert len(body["id"]) >= 22  # random, unguessable
    download = client.get(body["url"], headers=headers)
    assert download.status_code == 200
    assert download.mimetype == "image/jpeg"
    assert download.headers["Cache-Control"] == "private, no-store"
    image = Image.open(io.BytesIO(download.data))
    assert image.format == "JPEG"
    assert dict(image.getexif()) == {}
    assert "exif" not in image.info
    assert b"Exif" not in download.data and b"PhoneMaker" not in download.data
    assert image.size == (48, 64)  # EXIF orientation applied before the metadata was dropped
    for stored in media_storage.rglob("*.jpg"):
        assert b"Exif" not in stored.read_bytes()


@pytest.mark.parametrize(("fmt", "content_type"), [("PNG", "image/png"), ("WEBP", "image/webp")])
def test_png_and_webp_are_recognised_by_content_not_by_name(
    client, wechat_login, upload_image, fmt, content_type
):
    headers = wechat_login("ben")
    response = upload_image(headers, _image(fmt), filename="looks-like.jpg")
    assert response.status_code == 201, response.get_json()
    assert response.get_json()["content_type"] == content_type
    download = client.get(response.get_json()["url"], headers=headers)
    assert Image.open(io.BytesIO(download.data)).format == fmt


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"just some text, not a picture at all\n" * 10, "unsupported_image"),
        (b"GIF89a" + _image("PNG")[6:], "unsupported_image"),
        (_image("JPEG", (400, 300))[:300], "broken_image"),
        (b"", "empty_file"),
    ],
    ids=["text-named-jpg", "gif-header", "truncated-jpeg", "empty"],
)
def test_what_is_not_a_whole_image_is_refused_and_nothing_is_kept(
    app, wechat_login, upload_image, media_storage, data, code
):
    response = upload_image(wechat_login("cat"), data, filename="photo.jpg")
    assert response.status_code == 422
    error = response.get_json()["error"]
    assert error["code"] == code
    assert "file" in error["fields"]
    assert _stored(app, media_storage) == (0, [])


def test_an_oversized_image_is_refused_with_its_limit(app, wechat_login, upload_image, media_storage):
    data = _image("JPEG") + b"\0" * (10 * 1024 * 1024)  # a valid JPEG padded past 10 MB
    response = upload_image(wechat_login("dan"), data)
    assert response.status_code == 413
    error = response.get_json()["error"]
    assert error["code"] == "file_too_large"
    assert "10 MB" in error["message"]
    assert _stored(app, media_storage) == (0, [])


@pytest.mark.parametrize(
    "side",
    [8_000, 10_000, 30_000],
    ids=["over-our-cap", "over-pillow-warning", "over-pillow-error"],
)
def test_a_decompression_bomb_is_refused(app, wechat_login, upload_image, media_storage, side):
    bomb = _png(side, side)
    assert len(bomb) < 200 * 1024  # a few hundred kilobytes that would decode to gigabytes
    response = upload_image(wechat_login("eve"), bomb, filename="bomb.png")
    assert response.status_code == 422
    assert response.get_json()["error"]["code"] == "image_too_many_pixels"
    assert _stored(app, media_storage) == (0, [])


def test_a_large_photo_is_scaled_down(client, wechat_login, upload_image):
    headers = wechat_login("fay")
    response = upload_image(headers, _image("JPEG", (5000, 1000)))
    assert response.status_code == 201
    assert (response.get_json()["width"], response.get_json()["height"]) == (4096, 819)


def test_a_clue_photo_is_only_for_its_reporter_and_the_desk_that_triages_it(
    client, wechat_login, upload_image, report_clue, staff
):
    reporter = wechat_login("gus")
    photo = upload_image(reporter).get_json()
    url = photo["url"]

    assert client.get(url, headers=reporter).status_code == 200
    # Anonymous, an existing photo answers exactly as a missing one: nobody can probe for photos.
    anonymous, missing = client.get(url), client.get(url.rsplit("/", 1)[0] + "/" + "0" * 32)
    assert anonymous.status_code == missing.status_code == 404
    assert anonymous.get_json() == missing.get_json()
    other = client.get(url, headers=wechat_login("hal"))
    assert other.status_code == 404
    assert other.get_json()["error"]["code"] == "media_not_found"
    kundulun = staff("desk-kdl", "desk", "150203")
    assert client.get(url, headers=kundulun).status_code == 404  # not on a clue yet

    assert report_clue(reporter, photos=[photo["id"]]).status_code == 201
    assert client.get(url, headers=kundulun).status_code == 200
    assert client.get(url, headers=staff("desk-qs", "desk", "150204")).status_code == 404
    assert client.get(url, headers=staff("leader-kdl", "leader", "150203")).status_code == 404
    assert client.get(url, headers=reporter).status_code == 200
    assert client.get(url, headers=wechat_login("hal")).status_code == 404


def test_a_photo_can_be_used_once_and_only_by_its_owner(
    client, wechat_login, upload_image, report_clue, places
):
    owner = wechat_login("ida")
    photo = upload_image(owner).get_json()["id"]
    stolen = report_clue(wechat_login("jon"), photos=[photo])
    assert stolen.status_code == 422
    assert stolen.get_json()["error"]["code"] == "invalid_image"
    assert report_clue(owner, photos=[photo]).status_code == 201
    again = report_clue(owner, photos=[photo], place=places["qingshan"])
    assert again.status_code == 422
    assert again.get_json()["error"]["code"] == "image_in_use"


def test_feed_images_are_public_and_uploaded_by_staff_only(client, wechat_login, upload_image, staff):
    refused = upload_image(wechat_login("kim"), purpose="feed")
    assert refused.status_code == 403
    response = upload_image(staff("desk-feed", "desk", "150203"), purpose="feed")
    assert response.status_code == 201
    public = client.get(response.get_json()["url"])
    assert public.status_code == 200
    assert "public" in public.headers["Cache-Control"]


def test_unknown_purpose_is_a_field_error(wechat_login, upload_image):
    response = upload_image(wechat_login("lee"), purpose="avatar")
    assert response.status_code == 422
    assert "purpose" in response.get_json()["error"]["fields"]


def test_uploads_nobody_used_are_purged_with_their_files(
    app, wechat_login, upload_image, report_clue, media_storage
):
    from workers import media as media_jobs
    from yijing.extensions import db
    from yijing.models import Media
    from yijing.models.base import utcnow

    headers = wechat_login("max")
    used = upload_image(headers).get_json()["id"]
    upload_image(headers)
    assert report_clue(headers, photos=[used]).status_code == 201
    with app.app_context():
        db.session.execute(update(Media).values(created_at=utcnow() - timedelta(hours=25)))
        db.session.commit()
        assert media_jobs.purge_orphans() == 1
        assert db.session.scalars(select(Media.key)).all() == [used]
        db.session.remove()
    assert len(_stored(app, media_storage)[1]) == 1


def test_a_retried_upload_with_the_same_idempotency_key_is_the_first_upload(
    app, client, wechat_login, upload_image, media_storage, report_clue
):
    reporter = wechat_login("uma")
    keyed = {**reporter, "Idempotency-Key": "photo-1"}
    first = upload_image(keyed)
    again = upload_image(keyed)
    assert first.status_code == again.status_code == 201
    assert again.headers["Idempotent-Replayed"] == "true" and "Idempotent-Replayed" not in first.headers
    assert again.get_json() == first.get_json()
    assert _stored(app, media_storage)[0] == 1 and len(_stored(app, media_storage)[1]) == 1

    other_image = upload_image(keyed, _image(size=(80, 60)))
    assert other_image.status_code == 422
    assert other_image.get_json()["error"]["code"] == "idempotency_key_reused"
    # The same key from someone else, or without a key, is another upload.
    assert (
        upload_image({**wechat_login("vic"), "Idempotency-Key": "photo-1"}).get_json()["id"]
        != first.get_json()["id"]
    )
    assert upload_image(reporter).get_json()["id"] != first.get_json()["id"]

    # Once the photo is on an anonymous clue (it no longer names its uploader), a late retry still finds it.
    assert report_clue(reporter, anonymous=True, photos=[first.get_json()["id"]]).status_code == 201
    late = upload_image(keyed)
    assert late.status_code == 201 and late.get_json()["id"] == first.get_json()["id"]
    assert _stored(app, media_storage)[0] == 3
