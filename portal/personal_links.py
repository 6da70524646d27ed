"""The personal link of SPEC §5: `{PUBLIC_BASE_URL}/<slug>/v/<token>` in every code text.

The token is derived from the verification's id and its code under `DATA_KEY` (96 bits,
URL-safe), so every text of a verification (resends, the noon resend, retries) carries
the same link and the database keeps only its keyed digest, which is what a visit is
looked up by. It opens one pending verification only, so it dies with the code.
After a key rotation the token is still made under the key it was first made with,
as long as that key is held: a link sent before the rotation keeps working.
"""

from portal.models import Verification
from portal.protection import sealing

PURPOSE = "personal-link"


def _tokens(verification: Verification, code: str) -> list[str]:
    return sealing.derived_tokens(PURPOSE, f"{verification.id}:{code}")


def issue(verification: Verification, code: str) -> None:
    """Give a (flushed) verification its link: only the token's digest is kept."""
    verification.link_digest = sealing.digest(PURPOSE, _tokens(verification, code)[0])


def path(verification: Verification, code: str) -> str:
    """The link without the portal's address, `<slug>/v/<token>` (the gateways' templates take
    it as a parameter). A verification made before links existed gets its link here."""
    tokens = _tokens(verification, code)
    stored = verification.link_digest
    token = next((t for t in tokens if stored and sealing.matches(stored, PURPOSE, t)), None)
    if token is None:
        issue(verification, code)
        token = tokens[0]
    return f"{verification.province_slug}/v/{token}"


def digests(token: str) -> list[str]:
    """What a visit's token is looked up by: its digest under every key."""
    return sealing.digests(PURPOSE, token)
