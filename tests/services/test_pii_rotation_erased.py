"""PII key rotation (issue 13 additions): erased values are skipped, corrections and sealed envelopes
are re-encrypted and still open under the new key."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from sqlalchemy import select, update


def test_rotation_skips_erased_values_and_covers_corrections_and_envelopes(
    app, client, volunteers, report_clue, id_number
):
    from workers import privacy
    from yijing import pii
    from yijing.extensions import db
    from yijing.models import SealedEnvelope, Volunteer, VolunteerCorrection
    from yijing.services import pii_keys, sealed

    left_headers, left = volunteers.apply("left", id_number=id_number(seq=611))
    assert client.post("/api/v1/volunteers/me/withdraw", json={}, headers=left_headers).status_code == 200
    headers, _ = volunteers.apply("stays", id_number=id_number(seq=612))
    asked = client.post("/api/v1/volunteers/me/corrections", json={"real_name": "钱多多"}, headers=headers)
    assert asked.status_code == 201, asked.get_json()
    assert report_clue(headers, anonymous=True).status_code == 201
    with app.app_context():
        old = datetime.now(UTC) - timedelta(days=app.config["YIJING"].retain_closed_application_days + 1)
        db.session.execute(update(Volunteer).where(Volunteer.id == left["id"]).values(updated_at=old))
        db.session.commit()
        assert privacy.enforce_retention()["closed_applications"] == 1
        db.session.remove()

    original = app.config["YIJING"]
    try:
        app.config["YIJING"] = replace(
            original, pii_keys={**original.pii_keys, "k2": b"n" * 32}, pii_active_key_id="k2"
        )
        with app.app_context():
            pending = pii_keys.pending()
            assert pending["volunteers.real_name_enc"] == 1  # the erased one is not counted
            assert pending["volunteer_corrections.real_name_enc"] == 1
            assert pending["sealed_envelopes.payload_enc"] == 1  # the anonymous receipt, not yet released
            pii_keys.rotate()
            assert set(pii_keys.pending().values()) == {0}
            db.session.remove()
        app.config["YIJING"] = replace(original, pii_keys={"k2": b"n" * 32}, pii_active_key_id="k2")
        with app.app_context():
            correction = db.session.scalar(select(VolunteerCorrection))
            assert pii.decrypt(correction.real_name_enc, context="volunteer.real_name") == "钱多多"
            erased = db.session.get(Volunteer, left["id"])
            assert erased.real_name_enc == ""
            released = sealed.release_due(now=datetime.now(UTC) + timedelta(days=1))
            assert released["notify"] == 1
            assert db.session.scalars(select(SealedEnvelope)).all() == []
            db.session.remove()
    finally:
        app.config["YIJING"] = original
