"""`data reseal`: every sealed value brought under the current suite and key (SPEC §10).

After a key rotation or a suite switch, new values are sealed the new way while old ones
stay readable (their header names their suite and key). This re-seals the old ones, a
batch per transaction, while the portal runs. The digests that can be made again (of
phones and codes) are made anew with them; an ID's digest cannot (the ID is not kept)
and stays under the key it was made with, which is why the old key is kept for a day
after (the README's rotation steps).
"""

from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.orm import InstrumentedAttribute

from portal.extensions import db
from portal.models import Admin, Filing, Provider, Record, Verification
from portal.protection import sealing


@dataclass(frozen=True)
class SealedColumn:
    column: InstrumentedAttribute
    # What the value is bound to in its row (sealing.place), and its row's primary key.
    row_key: InstrumentedAttribute
    primary_key: InstrumentedAttribute
    # The digest column made from the same value, and its purpose.
    digest: tuple[InstrumentedAttribute, str] | None = None


SEALED = (
    SealedColumn(
        Verification.phone_sealed,
        Verification.filing_id,
        Verification.id,
        (Verification.phone_digest, "phone"),
    ),
    SealedColumn(
        Verification.code_sealed,
        Verification.filing_id,
        Verification.id,
        (Verification.code_digest, "code"),
    ),
    SealedColumn(Filing.personal_data_sealed, Filing.id, Filing.id),
    SealedColumn(
        Record.principal_phone_sealed,
        Record.domain,
        Record.domain,
        (Record.principal_phone_digest, "phone"),
    ),
    SealedColumn(Provider.webhook_secret_sealed, Provider.name, Provider.id),
    SealedColumn(Admin.totp_secret, Admin.username, Admin.id),
)


def reseal(batch: int) -> dict[str, int]:
    """How many values of each column were sealed anew."""
    return {str(sealed.column.expression): _reseal_column(sealed, batch) for sealed in SEALED}


def _reseal_column(sealed: SealedColumn, batch: int) -> int:
    """In primary-key order, so each row is read once however many batches there are."""
    done, last = 0, None
    while rows := _stale(sealed, batch, last):
        db.session.execute(_update(sealed), [_resealed(sealed, *row) for row in rows])
        db.session.commit()
        done += len(rows)
        last = rows[-1][0]
    return done


def _stale(sealed: SealedColumn, batch: int, after) -> list[sa.Row]:
    """Values sealed under another suite or key; an erased value (None) is left alone."""
    statement = (
        sa.select(sealed.primary_key, sealed.row_key, sealed.column)
        .where(sealed.column.is_not(None), sealed.column.not_like(f"{sealing.header()}%"))
        .order_by(sealed.primary_key)
        .limit(batch)
    )
    if after is not None:
        statement = statement.where(sealed.primary_key > after)
    return db.session.execute(statement).all()


def _update(sealed: SealedColumn) -> sa.Update:
    """Unless the value changed meanwhile (erased, say): then the row is left as it is."""
    table = sealed.column.class_.__table__
    return sa.update(table).where(
        table.c[sealed.primary_key.key] == sa.bindparam("_primary_key"),
        table.c[sealed.column.key] == sa.bindparam("_token"),
    )


def _resealed(sealed: SealedColumn, primary_key, row_key: str, token: str) -> dict:
    place = sealing.place(sealed.column, row_key)
    try:
        value = sealing.unseal(token, place)
    except sealing.Unsealable as error:
        raise sealing.Unsealable(f"{place}: {error}") from error
    values = {"_primary_key": primary_key, "_token": token}
    values[sealed.column.key] = sealing.seal(value, place)
    if sealed.digest:
        column, purpose = sealed.digest
        values[column.key] = sealing.digest(purpose, value)
    return values
