"""Demo data for the embedded default: a provider and a few filings whose codes go to `/dev/sms`."""

import secrets
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from portal import accounts, providers
from portal.api.schemas import FilingIn
from portal.extensions import db
from portal.filings import submit
from portal.models import Admin, Filing, Provider

DEMO_PROVIDER = "演示接入商"


def _principal(name: str, phone: str, id_number: str) -> dict:
    return {"name": name, "phone": phone, "id_type": "resident_id", "id_number": id_number}


ZHANG = _principal("张三", "13900000001", "120101199001011239")
LI = _principal("李四", "13900000002", "11010519491231002X")
WANG = _principal("王五", "13900000003", "620102197812120012")
# DEMO-TJ-2 has a person of its own: one phone, one filing, so each inbox text tells its filing.
ZHAO = _principal("赵六", "13900000004", "120105198503120049")

FILINGS = [
    {
        "province": "tianjin",
        "type": "new_filing",
        "reference": "DEMO-TJ-1",
        "entity": {"name": "天津示例科技有限公司", "principal": ZHANG},
        "websites": [{"domain": "shili.example.cn", "name": "示例网", "principal": LI}],
    },
    {
        "province": "tianjin",
        "type": "new_website",
        "reference": "DEMO-TJ-2",
        "websites": [{"domain": "blog.example.cn", "name": "示例博客", "principal": ZHAO}],
    },
    {
        "province": "gansu",
        "type": "change_filing",
        "change_scope": "entity",
        "reference": "DEMO-GS-1",
        "entity": {"name": "甘肃示例文化传媒有限公司", "principal": WANG},
    },
]


DEMO_ADMINS = {"demo-national": None, "demo-tianjin": "tianjin"}


@dataclass(frozen=True)
class Demo:
    api_key: str
    admin_password: str
    totp_secrets: dict[str, str]
    filings: list[Filing]


def load(now: datetime) -> Demo:
    """Idempotent: run again, it rotates the demo secrets (TOTP too) and adds no filing twice."""
    provider = db.session.scalar(sa.select(Provider).where(Provider.name == DEMO_PROVIDER))
    if provider is None:
        provider, api_key = providers.create(DEMO_PROVIDER, None, now)
    else:
        api_key = providers.rotate_key(provider)
    filings = [submit(provider, FilingIn.model_validate(body), now)[0] for body in FILINGS]
    password = _password()
    totp_secrets = {}
    for username, province in DEMO_ADMINS.items():
        admin = db.session.scalar(sa.select(Admin).where(Admin.username == username))
        if admin is None:
            admin = accounts.create(username, password, province, now)
        else:
            accounts.reset_password(admin, password, now)
        totp_secrets[username] = accounts.enrol_two_factor(admin, now).secret
    db.session.commit()
    return Demo(api_key, password, totp_secrets, filings)


def _password() -> str:
    """Random, and within the password rules (a random draw may miss a character class)."""
    while True:
        password = secrets.token_urlsafe(12)
        try:
            for username in DEMO_ADMINS:
                accounts.check_password_rules(password, username)
        except accounts.AccountError:
            continue
        return password
