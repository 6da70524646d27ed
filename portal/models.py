"""The data: provinces and their rollout, providers, filings, verifications, messages, events."""

import enum
import uuid
from datetime import UTC, date, datetime

import sqlalchemy as sa
from flask_login import UserMixin
from sqlalchemy.orm import Mapped, mapped_column, relationship

from portal.clock import shanghai_date
from portal.extensions import db


class UTCDateTime(sa.types.TypeDecorator):
    """Aware UTC datetimes in Python, stored as naive UTC on every backend."""

    impl = sa.DateTime
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given; times are aware UTC")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value, dialect):
        return value.replace(tzinfo=UTC) if value is not None else None


class FilingType(enum.StrEnum):
    NEW_FILING = "new_filing"
    NEW_WEBSITE = "new_website"
    NEW_ACCESS = "new_access"
    CHANGE_FILING = "change_filing"
    CANCEL_FILING = "cancel_filing"
    CANCEL_WEBSITE = "cancel_website"
    CANCEL_ACCESS = "cancel_access"


class FilingStatus(enum.StrEnum):
    PENDING_VERIFICATION = "pending_verification"
    UNDER_REVIEW = "under_review"
    APPROVED = "approved"
    REJECTED = "rejected"
    RETURNED = "returned"


# A filing in one of these is decided: nothing more happens to it.
FINAL_STATUSES = (FilingStatus.APPROVED, FilingStatus.REJECTED, FilingStatus.RETURNED)


class ReturnReason(enum.StrEnum):
    EXPIRED = "expired"
    VERIFICATION_FAILED = "verification_failed"


class VerificationStatus(enum.StrEnum):
    PENDING = "pending"
    VERIFIED = "verified"
    FAILED = "failed"
    EXPIRED = "expired"


class MessageKind(enum.StrEnum):
    INITIAL = "initial"
    RESEND = "resend"
    NOON_RESEND = "noon_resend"


class MessageStatus(enum.StrEnum):
    QUEUED = "queued"
    SENT = "sent"
    FAILED = "failed"
    # Not sent: its code stopped being pending while it waited (portal/delivery/sending.py).
    WITHDRAWN = "withdrawn"


class Delivery(enum.StrEnum):
    """What a gateway's receipt said about a text."""

    DELIVERED = "delivered"
    UNDELIVERED = "undelivered"


def _new_id() -> str:
    return uuid.uuid4().hex


class TenantOwned:
    """Rows that belong to one province. In the admin console every query of them is
    filtered to the signed-in admin's province (see portal/admin/tenancy.py). Each table
    declares its own column; this one lets the filter be written once for all of them."""

    province_slug: Mapped[str] = mapped_column(sa.ForeignKey("provinces.slug"))


class Province(db.Model):
    __tablename__ = "provinces"

    slug: Mapped[str] = mapped_column(sa.String(32), primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(16))
    abbreviation: Mapped[str] = mapped_column(sa.String(4))
    authority: Mapped[str] = mapped_column(sa.String(32))
    batch: Mapped[int | None]
    live_from: Mapped[date | None]
    code_validity_hours: Mapped[int] = mapped_column(default=24, server_default="24")
    resend_limit: Mapped[int] = mapped_column(default=2, server_default="2")

    def is_live(self, now: datetime) -> bool:
        return self.live_from is not None and self.live_from <= shanghai_date(now)


class FilingTypeRule(db.Model):
    """Whether a filing type's principals are checked by SMS: data, so it can be switched on."""

    __tablename__ = "filing_type_rules"

    type: Mapped[str] = mapped_column(sa.String(32), primary_key=True)
    verification_required: Mapped[bool]


class Provider(db.Model):
    __tablename__ = "providers"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(128), unique=True)
    api_key_digest: Mapped[str] = mapped_column(sa.String(64), unique=True)
    webhook_secret_sealed: Mapped[str] = mapped_column(sa.String(256))
    callback_url: Mapped[str | None] = mapped_column(sa.String(2048))
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Filing(TenantOwned, db.Model):
    __tablename__ = "filings"
    # No index names `status`, `return_reason`, `deadline` or `final_at`, and PostgreSQL leaves
    # its pages 15 % free: a status change (the expiry of 100,000 filings at once, a decision)
    # and a deadline's refresh are HOT updates, written into no index. What those indexes
    # gave is in two tables of their own: the filings awaiting codes (`PendingFiling`) and
    # those due for erasure (`ErasureDue`).
    __table_args__ = (
        sa.UniqueConstraint("provider_id", "reference"),
        # The console's (portal/admin/console.py), nationally and per province: the listing
        # newest first and the export by (created_at, id), read in index order; the
        # dashboard's counts for today and the week by `created_at`.
        sa.Index("ix_filings_created_id", "created_at", "id"),
        sa.Index("ix_filings_province_created_id", "province_slug", "created_at", "id"),
        # The search by reference (the unique key leads with the provider).
        sa.Index("ix_filings_reference", "reference"),
        # The providers that filed in a province (the search form's list), one probe each.
        sa.Index("ix_filings_province_provider", "province_slug", "provider_id"),
        {"postgresql_with": {"fillfactor": 85}},
    )

    id: Mapped[str] = mapped_column(sa.String(32), primary_key=True, default=_new_id)
    provider_id: Mapped[int] = mapped_column(sa.ForeignKey("providers.id"))
    reference: Mapped[str] = mapped_column(sa.String(64))
    province_slug: Mapped[str] = mapped_column(sa.ForeignKey("provinces.slug"))
    type: Mapped[str] = mapped_column(sa.String(32))
    change_scope: Mapped[str | None] = mapped_column(sa.String(16))
    status: Mapped[str] = mapped_column(sa.String(32))
    return_reason: Mapped[str | None] = mapped_column(sa.String(32))
    # As submitted, with masked phones and IDs and no principal's name: those are sealed in
    # `personal_data_sealed` (SPEC §10), erased once the retention period is over.
    content: Mapped[dict] = mapped_column(sa.JSON)
    # A keyed digest of the body as submitted: a resubmission of the reference is compared
    # with it (null for filings taken in before it was kept).
    body_digest: Mapped[str | None] = mapped_column(sa.String(64))
    personal_data_sealed: Mapped[str | None] = mapped_column(sa.Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    deadline: Mapped[datetime | None] = mapped_column(UTCDateTime)
    review_note: Mapped[str | None] = mapped_column(sa.String(500))
    # When it reached a final status; the retention period runs from then.
    final_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    personal_data_erased_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    province: Mapped[Province] = relationship()
    verifications: Mapped[list["Verification"]] = relationship(
        back_populates="filing", order_by="Verification.id"
    )


class Verification(TenantOwned, db.Model):
    """One code sent to one distinct phone of a filing.

    No index names `status`, in a key or a predicate, and PostgreSQL leaves its pages 15 %
    free: the status changes (verified, failed, expired) are HOT updates, which write the
    row's new version beside the old one and no index entry. What the partial indexes of
    the pending rows gave is in LiveCode.
    """

    __tablename__ = "verifications"
    __table_args__ = (
        sa.Index("ix_verifications_lookup", "province_slug", "phone_digest", "code_digest"),
        # Pacing counts the texts sent to a phone by its digest.
        sa.Index("ix_verifications_phone_digest", "phone_digest"),
        {"postgresql_with": {"fillfactor": 85}},
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    filing_id: Mapped[str] = mapped_column(sa.ForeignKey("filings.id"), index=True)
    province_slug: Mapped[str] = mapped_column(sa.ForeignKey("provinces.slug"))
    # Sealed values are None once erased under the retention period.
    phone_sealed: Mapped[str | None] = mapped_column(sa.String(128))
    phone_digest: Mapped[str] = mapped_column(sa.String(64))
    phone_masked: Mapped[str] = mapped_column(sa.String(16))
    roles: Mapped[list[str]] = mapped_column(sa.JSON)
    code_digest: Mapped[str] = mapped_column(sa.String(64))
    code_sealed: Mapped[str | None] = mapped_column(sa.String(256))
    id_digest: Mapped[str] = mapped_column(sa.String(64))
    id_masked: Mapped[str] = mapped_column(sa.String(32))
    status: Mapped[str] = mapped_column(sa.String(16), default=VerificationStatus.PENDING)
    wrong_id_count: Mapped[int] = mapped_column(default=0)
    resend_count: Mapped[int] = mapped_column(default=0)
    noon_resend_at: Mapped[datetime] = mapped_column(UTCDateTime)
    noon_resent: Mapped[bool] = mapped_column(default=False)
    verified_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # When the code stops being valid: set by its first sending, or from the filing's
    # acceptance if none of its texts could be sent (portal/deadlines.py).
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The keyed digest of the personal link's token (portal/personal_links.py).
    link_digest: Mapped[str | None] = mapped_column(sa.String(64), index=True)

    filing: Mapped[Filing] = relationship(back_populates="verifications")
    live_code: Mapped["LiveCode | None"] = relationship(
        cascade="all, delete-orphan", passive_deletes=True
    )

    def __init__(self, **fields):
        """A pending verification reserves its code in its province as it is inserted."""
        super().__init__(**fields)
        if self.status in (None, VerificationStatus.PENDING):
            self.live_code = LiveCode(
                province_slug=self.province_slug,
                code_digest=self.code_digest,
                noon_resend_at=self.noon_resend_at,
            )


class LiveCode(db.Model):
    """A pending verification's code, reserved in its province while the verification is
    pending, and when its noon resend falls due (SPEC §4): the two things a partial index of
    the pending verifications gave, kept where a status change of a verification writes
    nothing. Written with the verification; deleted when it leaves pending
    (portal/live_codes.py)."""

    __tablename__ = "live_codes"
    __table_args__ = (
        # A live code is unique in its province: backs intake's draw against a concurrent one.
        sa.UniqueConstraint("province_slug", "code_digest", name="uq_live_codes_code"),
        sa.Index("ix_live_codes_noon_resend_at", "noon_resend_at"),
    )

    verification_id: Mapped[int] = mapped_column(
        sa.ForeignKey("verifications.id", ondelete="CASCADE"), primary_key=True
    )
    province_slug: Mapped[str] = mapped_column(sa.String(32))
    code_digest: Mapped[str] = mapped_column(sa.String(64))
    # None once the noon resend was sent.
    noon_resend_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class PendingFiling(db.Model):
    """A filing awaiting its codes, with its deadline once it has one: the expiry's due list
    and the console's pending filings, kept off `filings` so that no index there names
    `status` or `deadline`.

    Written by triggers on `filings` (migration 0019): a row for each filing inserted pending
    verification, whoever inserts it, and its deadline copied whenever `filings.deadline`
    changes (`deadlines.refresh`). Deleted when the filing leaves pending verification
    (`filings.change_status`, the expiry): readers still check the filing's own status."""

    __tablename__ = "pending_filings"
    __table_args__ = (sa.Index("ix_pending_filings_deadline", "deadline", "filing_id"),)

    filing_id: Mapped[str] = mapped_column(sa.ForeignKey("filings.id"), primary_key=True)
    deadline: Mapped[datetime | None] = mapped_column(UTCDateTime)


class ErasureDue(db.Model):
    """A filing final and its personal data not yet erased, by when it became final: the
    erasure's due list (portal/sweeps.py), kept off `filings` so that no index there names
    `final_at`. Written wherever `final_at` is (`filings.change_status`, the expiry); deleted
    by the erasure. No foreign key: the expiry writes one for each filing it returns (100,000
    in a large sweep), beside the filing's own update, and a key would check each again."""

    __tablename__ = "erasure_due"

    # Keyed in the erasure's order: the one index the expiry writes into for each filing.
    final_at: Mapped[datetime] = mapped_column(UTCDateTime, primary_key=True)
    filing_id: Mapped[str] = mapped_column(sa.String(32), primary_key=True)


class PhoneCount(db.Model):
    """A phone's count in the current window of one per-phone limit. In the database, not
    Redis: a Redis restart must not give a phone a fresh budget of wrong codes."""

    __tablename__ = "phone_counts"
    __table_args__ = (sa.Index("ix_phone_counts_window_start", "window_start"),)

    # A keyed digest of the phone: the table names no phone number.
    phone_key: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    scope: Mapped[str] = mapped_column(sa.String(16), primary_key=True)
    window_start: Mapped[datetime] = mapped_column(UTCDateTime)
    count: Mapped[int]


class SmsMessage(db.Model):
    """The outbox: a text to send, committed with the change that asked for it."""

    __tablename__ = "sms_messages"
    __table_args__ = (
        sa.Index("ix_sms_messages_status_created", "status", "created_at"),
        sa.Index("ix_sms_messages_status_next_attempt", "status", "next_attempt_at"),
        sa.Index("ix_sms_messages_gateway_message", "gateway", "gateway_message_id"),
        sa.Index("ix_sms_messages_sent_at", "sent_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    verification_id: Mapped[int] = mapped_column(sa.ForeignKey("verifications.id"), index=True)
    kind: Mapped[str] = mapped_column(sa.String(16))
    status: Mapped[str] = mapped_column(sa.String(16), default=MessageStatus.QUEUED)
    attempts: Mapped[int] = mapped_column(default=0)
    last_error: Mapped[str | None] = mapped_column(sa.String(500))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # When the relay may queue it again, if no queued job has delivered it by then.
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Until when the job attempting it holds it (portal/delivery/outbox.py `claim`).
    held_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # When Redis refused its job: never queued, so the next relay takes it.
    enqueue_failed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # When pacing per phone let it go, if it had to wait (SPEC §9).
    paced_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The gateway that took the text and its id there (BizId, SerialNo). A text sent whose id
    # is unknown timed out: the gateway may or may not have taken it.
    gateway: Mapped[str | None] = mapped_column(sa.String(16))
    gateway_message_id: Mapped[str | None] = mapped_column(sa.String(64))
    # The gateway's receipt: delivered or undelivered, the carrier's status code, its time.
    delivery: Mapped[str | None] = mapped_column(sa.String(16))
    receipt_code: Mapped[str | None] = mapped_column(sa.String(64))
    receipt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # When the text goes once through the next gateway, unless a receipt says it arrived.
    reroute_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)
    # The text this one sends again through another gateway.
    rerouted_from: Mapped[int | None] = mapped_column(sa.ForeignKey("sms_messages.id"))

    verification: Mapped[Verification] = relationship()
    original: Mapped["SmsMessage | None"] = relationship(remote_side=[id])


class Event(db.Model):
    """A filing's status change, written in the same transaction as the change.

    It keeps the status and return reason the change left; the rest of the filing is
    described when the event is sent or listed (portal/api/description.py `as_changed`).
    """

    __tablename__ = "events"
    __table_args__ = (
        sa.Index("ix_events_delivered_next_attempt", "delivered_at", "next_attempt_at"),
    )

    id: Mapped[str] = mapped_column(sa.String(32), primary_key=True, default=_new_id)
    # No foreign keys: every event is written from its filing's row in the same transaction
    # (portal/events.py), filings and providers are never deleted, and checking the keys
    # again cost the expiry of 100,000 filings ~1 s (docs/performance.md).
    filing_id: Mapped[str] = mapped_column(sa.String(32), index=True)
    provider_id: Mapped[int]
    type: Mapped[str] = mapped_column(sa.String(64))
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # Null in the events the code before migration 0018 wrote (before the upgrade, or on a node
    # not yet replaced during a rolling one): their `payload`, the whole filing as that code
    # built it, holds them.
    status: Mapped[str | None] = mapped_column(sa.String(32))
    return_reason: Mapped[str | None] = mapped_column(sa.String(32))
    payload: Mapped[dict | None] = mapped_column(sa.JSON)
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # As for texts: the hold of the job attempting it, and when Redis refused its job.
    held_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    enqueue_failed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    filing: Mapped[Filing] = relationship(primaryjoin="foreign(Event.filing_id) == Filing.id")
    deliveries: Mapped[list["WebhookDelivery"]] = relationship(order_by="WebhookDelivery.id")

    @property
    def changed_to(self) -> tuple[str, str | None]:
        """The status and return reason the change left."""
        if self.status is None:
            return self.payload["status"], self.payload.get("return_reason")
        return self.status, self.return_reason


class WebhookDelivery(db.Model):
    """One attempt to deliver an event to the provider's callback URL."""

    __tablename__ = "webhook_deliveries"

    id: Mapped[int] = mapped_column(primary_key=True)
    event_id: Mapped[str] = mapped_column(sa.ForeignKey("events.id"), index=True)
    # Indexed for the pruning (portal/pruning.py), which looks for the old ones.
    attempted_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    status_code: Mapped[int | None]
    error: Mapped[str | None] = mapped_column(sa.String(500))


class Record(db.Model):
    """A website on record, with its principal's phone: what `new_access` is checked against."""

    __tablename__ = "records"

    domain: Mapped[str] = mapped_column(sa.String(253), primary_key=True)
    # Sealed as well as digested, so that `data reseal` can digest it under a new key.
    principal_phone_sealed: Mapped[str] = mapped_column(sa.String(128))
    principal_phone_digest: Mapped[str] = mapped_column(sa.String(64))
    filing_id: Mapped[str | None] = mapped_column(sa.ForeignKey("filings.id"))
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime)


class CaptchaChallenge(db.Model):
    """An image captcha's answer, kept server side and deleted when used."""

    __tablename__ = "captcha_challenges"

    id: Mapped[str] = mapped_column(sa.String(32), primary_key=True, default=_new_id)
    answer: Mapped[str] = mapped_column(sa.String(8))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


class VerifyAttempt(TenantOwned, db.Model):
    """One submission of the verify form that got past its captcha, for the admin timeline."""

    __tablename__ = "verify_attempts"
    __table_args__ = (sa.Index("ix_verify_attempts_province_at", "province_slug", "attempted_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    province_slug: Mapped[str] = mapped_column(sa.ForeignKey("provinces.slug"))
    verification_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("verifications.id"), index=True
    )
    outcome: Mapped[str] = mapped_column(sa.String(32))
    client_address: Mapped[str] = mapped_column(sa.String(64))
    # Indexed for the pruning (portal/pruning.py), which looks for the old ones.
    attempted_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


class Admin(UserMixin, db.Model):
    """A console account: a province admin (`province_slug` set) or a national admin."""

    __tablename__ = "admins"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(sa.String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(sa.String(256))
    province_slug: Mapped[str | None] = mapped_column(sa.ForeignKey("provinces.slug"))
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # The TOTP secret, sealed; the account is enrolled once a code has confirmed it.
    totp_secret: Mapped[str | None] = mapped_column(sa.String(512))
    totp_enrolled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The time step of the last code accepted: each code is good once.
    totp_last_step: Mapped[int | None]

    # The token of the console session this object was loaded for (portal/admin_sessions.py).
    session_key = None

    @property
    def national(self) -> bool:
        return self.province_slug is None

    @property
    def enrolled(self) -> bool:
        return self.totp_enrolled_at is not None

    @property
    def is_active(self) -> bool:
        return self.active

    def get_id(self) -> str | None:
        """The cookie remembers the session's token, not the account: ending it signs out."""
        return self.session_key


class AdminSession(db.Model):
    """A console session, kept on the server; the cookie holds its token, the table a digest."""

    __tablename__ = "admin_sessions"

    id: Mapped[int] = mapped_column(primary_key=True)
    token_digest: Mapped[str] = mapped_column(sa.String(64), unique=True)
    admin_id: Mapped[int] = mapped_column(sa.ForeignKey("admins.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class RecoveryCode(db.Model):
    """A single-use recovery code of an account, kept as a digest."""

    __tablename__ = "recovery_codes"
    __table_args__ = (sa.UniqueConstraint("admin_id", "code_digest"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    admin_id: Mapped[int] = mapped_column(sa.ForeignKey("admins.id"))
    code_digest: Mapped[str] = mapped_column(sa.String(64))
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class PreviousPassword(db.Model):
    """A password an account had before: a new one may not repeat the last few."""

    __tablename__ = "previous_passwords"

    id: Mapped[int] = mapped_column(primary_key=True)
    admin_id: Mapped[int] = mapped_column(sa.ForeignKey("admins.id"), index=True)
    password_hash: Mapped[str] = mapped_column(sa.String(256))
    replaced_at: Mapped[datetime] = mapped_column(UTCDateTime)


class SigninThrottle(db.Model):
    """Failed sign-ins counted under one key (an address, or an account name with an address)
    and when that key may try again (portal/signin_throttle.py)."""

    __tablename__ = "signin_throttles"

    key: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    failures: Mapped[int]
    next_try_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


class AuditEntry(TenantOwned, db.Model):
    """An admin action: who, when, what, from where, and the state before and after. Never
    changed: each entry is chained to the one before by a keyed MAC (portal/audit.py)."""

    __tablename__ = "audit_entries"
    __table_args__ = (
        sa.Index("ix_audit_entries_province_at", "province_slug", "at"),
        sa.UniqueConstraint("seq", name="uq_audit_entries_seq"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    # The entry's place in the chain: 1, 2, 3 … with no gap.
    seq: Mapped[int]
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    admin_id: Mapped[int] = mapped_column(sa.ForeignKey("admins.id"))
    admin_username: Mapped[str] = mapped_column(sa.String(64))
    # The province the action concerns; None for national matters (providers, accounts).
    province_slug: Mapped[str | None] = mapped_column(sa.ForeignKey("provinces.slug"))
    action: Mapped[str] = mapped_column(sa.String(64))
    target: Mapped[str] = mapped_column(sa.String(128))
    before: Mapped[dict | None] = mapped_column(sa.JSON)
    after: Mapped[dict | None] = mapped_column(sa.JSON)
    # The admin's address, whole: the console's users are officials, not applicants.
    address: Mapped[str | None] = mapped_column(sa.String(64))
    # HMAC(key, previous entry's mac ‖ this entry), under the suite and key it names; ""
    # for an entry written before the chain began.
    suite: Mapped[str] = mapped_column(sa.String(16))
    key_id: Mapped[str] = mapped_column(sa.String(16))
    mac: Mapped[str] = mapped_column(sa.String(64))


class AuditChain(db.Model):
    """The audit chain's one row: its head (the last entry appended, locked by each append so
    that two requests never chain to the same entry) and its anchor (the first entry kept and
    the mac it chains to, moved on by retention). `tag` is their MAC, so that neither end can
    be cut off unseen."""

    __tablename__ = "audit_chain"

    id: Mapped[int] = mapped_column(primary_key=True)
    head_seq: Mapped[int]
    head_mac: Mapped[str] = mapped_column(sa.String(64))
    anchor_seq: Mapped[int]
    anchor_mac: Mapped[str] = mapped_column(sa.String(64))
    suite: Mapped[str] = mapped_column(sa.String(16))
    key_id: Mapped[str] = mapped_column(sa.String(16))
    tag: Mapped[str] = mapped_column(sa.String(64))
