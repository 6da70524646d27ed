"""The access-provider API's shapes: validation and the OpenAPI document come from these."""

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from portal.models import FilingStatus, FilingType, ReturnReason, VerificationStatus
from portal.protection.personal_data import PHONE_PATTERN, normalise_id, resident_id_is_valid

IdType = Literal[
    "resident_id",
    "passport",
    "hk_macao_permit",
    "taiwan_permit",
    "foreign_permanent_resident_id",
    "other",
]
DOMAIN_PATTERN = r"^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class Principal(Strict):
    name: str = Field(min_length=1, max_length=64)
    phone: str = Field(pattern=PHONE_PATTERN, description="Mainland mobile number, 11 digits")
    id_type: IdType
    id_number: str = Field(min_length=6, max_length=32)

    @field_validator("id_number")
    @classmethod
    def id_number_is_checkable(cls, value: str, info: ValidationInfo) -> str:
        value = normalise_id(value)
        if not value.isascii():
            raise ValueError("ID numbers are written with the letters A-Z and the digits 0-9")
        if info.data.get("id_type") == "resident_id" and not resident_id_is_valid(value):
            raise ValueError("not a valid resident ID number (GB 11643 check character)")
        if not value[-6:].isalnum():
            raise ValueError(
                "the last six characters must be letters or digits to be entered on the form"
            )
        return value


class Entity(Strict):
    name: str = Field(min_length=1, max_length=128)
    principal: Principal


class Website(Strict):
    domain: str = Field(
        pattern=DOMAIN_PATTERN, max_length=253, description="Lower-case domain name"
    )
    name: str = Field(min_length=1, max_length=128)
    principal: Principal

    @field_validator("domain", mode="before")
    @classmethod
    def lower_case(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value


class FilingIn(Strict):
    province: str = Field(
        min_length=1,
        max_length=32,
        pattern=r"^[a-z][a-z0-9-]*$",
        description="Province slug, e.g. tianjin",
    )
    type: FilingType
    reference: str = Field(
        min_length=1,
        max_length=64,
        pattern=r"^[\x21-\x7e]+$",
        description=(
            "The provider's own order number; resubmitted with the same body it returns the "
            "same filing, with another body it is refused (409 reference_conflict)"
        ),
    )
    change_scope: Literal["entity", "website", "both"] | None = None
    entity: Entity | None = None
    websites: list[Website] = Field(default_factory=list, max_length=100)

    @field_validator("websites")
    @classmethod
    def domains_are_distinct(cls, websites: list[Website]) -> list[Website]:
        domains = [site.domain for site in websites]
        repeated = sorted({domain for domain in domains if domains.count(domain) > 1})
        if repeated:
            raise ValueError(f"each website once: {', '.join(repeated)} is given twice")
        return websites


class VerificationOut(BaseModel):
    phone: str = Field(description="Masked, e.g. 139****0000")
    roles: list[str]
    status: VerificationStatus
    delivery: Literal["queued", "sent", "delivered", "undelivered", "failed"] | None = Field(
        description="The latest text to this phone: queued, sent (a gateway accepted it), "
        "delivered or undelivered (the gateway's receipt said so), failed (no gateway took it)"
    )


class FilingOut(BaseModel):
    id: str
    reference: str
    province: str
    type: FilingType
    status: FilingStatus
    return_reason: ReturnReason | None
    created_at: str = Field(description="ISO 8601, +08:00")
    deadline: str | None = Field(
        description="ISO 8601, +08:00; set when the first code is sent, null before"
    )
    verifications: list[VerificationOut]


class WebhookAttemptOut(BaseModel):
    attempted_at: str = Field(description="ISO 8601, +08:00")
    status_code: int | None
    error: str | None = Field(
        description="Why the attempt failed: `HTTP <status>`, `timeout`, `connection failed`,"
        " `TLS failed`, `name not resolved`, or `refused: …` (a callback URL the portal does"
        " not post to: `private address`, `https required`, `invalid URL`); null when it"
        " succeeded"
    )


class EventOut(BaseModel):
    event_id: str
    type: str
    occurred_at: str = Field(description="ISO 8601, +08:00")
    delivered_at: str | None = Field(description="When your callback acknowledged it (2xx)")
    filing: dict = Field(
        description="The filing (FilingOut): `status` and `return_reason` as the change left"
        " them, the rest as it is when this is sent or read"
    )
    attempts: list[WebhookAttemptOut]


class EventList(BaseModel):
    events: list[EventOut]


class FieldError(BaseModel):
    field: str
    message: str


class Problem(BaseModel):
    """RFC 9457 problem details, with a stable `code`."""

    type: str = "about:blank"
    title: str
    status: int
    code: str
    detail: str | None = None
    errors: list[FieldError] = Field(default_factory=list)
