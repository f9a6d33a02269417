"""Key rotation for personal information: re-encrypt every PII column under the active key.

Rotating keys: add the new key to ``PII_KEYS`` (``old:…,new:…``), make it ``PII_ACTIVE_KEY_ID``
and deploy (new values use it, old ones still decrypt), run ``flask yijing rotate-pii-keys``
until it reports nothing left under an old key, then drop the old key from ``PII_KEYS``.

A feature that adds an encrypted column registers it in :data:`PII_COLUMNS` (model, column
name, the ``context`` it is encrypted with). Blind indexes use ``PII_HASH_KEY``, which this
does not rotate.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import func, not_, select, update

from yijing import pii
from yijing.config import settings
from yijing.extensions import db
from yijing.models import SealedEnvelope, User, Volunteer, VolunteerCorrection
from yijing.services import auth, sealed, volunteers


@dataclass(frozen=True)
class PIIColumn:
    model: type
    column: str
    context: str

    @property
    def label(self) -> str:
        return f"{self.model.__tablename__}.{self.column}"  # type: ignore[attr-defined]


PII_COLUMNS: list[PIIColumn] = [
    PIIColumn(User, "phone_enc", auth.PHONE_CONTEXT),
    PIIColumn(User, "session_key_enc", auth.SESSION_KEY_CONTEXT),
    PIIColumn(Volunteer, "real_name_enc", volunteers.NAME_CONTEXT),
    PIIColumn(Volunteer, "id_number_enc", volunteers.ID_NUMBER_CONTEXT),
    PIIColumn(Volunteer, "phone_enc", volunteers.PHONE_CONTEXT),
    PIIColumn(VolunteerCorrection, "real_name_enc", volunteers.NAME_CONTEXT),
    PIIColumn(VolunteerCorrection, "id_number_enc", volunteers.ID_NUMBER_CONTEXT),
    PIIColumn(VolunteerCorrection, "phone_enc", volunteers.PHONE_CONTEXT),
    PIIColumn(SealedEnvelope, "payload_enc", sealed.ENVELOPE_CONTEXT),
]


def _not_active(column, active: str):  # type: ignore[no-untyped-def]
    # An erased value is an empty string (yijing.services.account.erase_application): nothing to rotate.
    return column.is_not(None) & (column != "") & not_(column.startswith(f"{active}:", autoescape=True))


def pending() -> dict[str, int]:
    """How many values of each column are still under a key other than the active one."""
    active = settings().pii_active_key_id
    counts = {}
    for spec in PII_COLUMNS:
        column = getattr(spec.model, spec.column)
        counts[spec.label] = db.session.scalar(
            select(func.count()).select_from(spec.model).where(_not_active(column, active))
        )
    db.session.rollback()
    return counts


def rotate(batch_size: int = 500, progress: Callable[[str, int], None] | None = None) -> dict[str, int]:
    """Re-encrypt every value not under the active key; one commit per batch. Returns counts.

    A row changed meanwhile (its value is no longer the one read) is left alone: it was written
    under the active key anyway.
    """
    active = settings().pii_active_key_id
    done: dict[str, int] = {}
    for spec in PII_COLUMNS:
        model_id = spec.model.id  # type: ignore[attr-defined]
        column = getattr(spec.model, spec.column)
        last_id, count = 0, 0
        while True:
            rows = db.session.execute(
                select(model_id, column)
                .where(model_id > last_id, _not_active(column, active))
                .order_by(model_id)
                .limit(batch_size)
            ).all()
            if not rows:
                break
            for row_id, stored in rows:
                fresh = pii.reencrypt(stored, context=spec.context)
                count += db.session.execute(
                    update(spec.model)
                    .where(model_id == row_id, column == stored)
                    .values({spec.column: fresh})
                    .execution_options(synchronize_session=False)
                ).rowcount
            db.session.commit()
            last_id = rows[-1][0]
            if progress:
                progress(spec.label, count)
        done[spec.label] = count
    return done
