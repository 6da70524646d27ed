"""What a text says and carries: the whole text for gateways that send free text, and the
code and link for the cloud gateways, which send a pre-approved template."""

from dataclasses import dataclass

from portal import personal_links
from portal.messages import SMS_TEXT
from portal.models import Province, SmsMessage
from portal.protection.personal_data import verification_code, verification_phone


@dataclass(frozen=True)
class Text:
    # Ours, `sms-<id>`: the OutId, SessionContext or Idempotency-Key the gateway is given.
    message_id: str
    phone: str
    body: str
    code: str
    # The verify link's path, `<slug>/v/<token>`: the template's `link` variable.
    link: str
    # The gateway that did not deliver this text before, when it is sent again elsewhere.
    not_via: str | None = None


def message_id(message: SmsMessage) -> str:
    return f"sms-{message.id}"


def text_for(message: SmsMessage, province: Province, base_url: str) -> Text:
    verification = message.verification
    code = verification_code(verification)
    link = personal_links.path(verification, code)
    return Text(
        message_id=message_id(message),
        phone=verification_phone(verification),
        body=code_text(province, code, f"{base_url}/{link}"),
        code=code,
        link=link,
        not_via=message.original.gateway if message.original is not None else None,
    )


def code_text(province: Province, code: str, link: str) -> str:
    """The text of a code, with the person's link (`portal.personal_links`)."""
    return SMS_TEXT.format(
        authority=province.authority, code=code, hours=province.code_validity_hours, link=link
    )
