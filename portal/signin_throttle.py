"""Failed sign-ins slow down the address and the account they came from (SPEC §10).

Two keys count failures: the client address (IPv6 by its /64), and the account name
*with* that address. So an attacker's failures never delay the owner signing in from
elsewhere, and an unknown name is counted exactly like a known one. After FREE
failures a key waits 8 s before its next try, the wait doubling with each failure up
to 15 minutes; nothing ever locks an account.

Each try takes a slot before the password is checked: one conditional `UPDATE … WHERE
failures = <as read>` counts it as a failure in advance, so parallel tries cannot
check more passwords than the counters allow. A try that succeeds gives its slots
back. Keys quiet for a day are deleted by the sweep, which forgets their failures.
Keys are keyed digests: the table holds no address and no name.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from portal.extensions import db
from portal.models import SigninThrottle
from portal.protection import sealing

ACCOUNT_FREE_FAILURES = 3
ADDRESS_FREE_FAILURES = 20
FIRST_WAIT = timedelta(seconds=8)
LONGEST_WAIT = timedelta(minutes=15)
FORGET_AFTER = timedelta(days=1)
# A try that keeps losing the race for its key (other tries from the same address) is refused.
RACE_ROUNDS = 10


@dataclass(frozen=True)
class Slot:
    key: str
    failures: int  # counting this try
    next_try_was: datetime | None


def wait_after(failures: int, free: int) -> timedelta:
    if failures < free:
        return timedelta(0)
    return min(FIRST_WAIT * 2 ** (failures - free), LONGEST_WAIT)


def reserve(username: str, address: str, now: datetime) -> list[Slot] | None:
    """A slot of (account, address) and one of the address, or None while either must wait."""
    account = _take(_key("account", f"{username}\n{address}"), ACCOUNT_FREE_FAILURES, now)
    if account is None:
        return None
    address_slot = _take(_key("address", address), ADDRESS_FREE_FAILURES, now)
    if address_slot is None:
        _give_back(account)
        return None
    return [account, address_slot]


def release(slots: list[Slot]) -> None:
    """The try succeeded: the account's failures from this address are forgotten, and the
    address gets its slot back."""
    account, address = slots
    db.session.execute(sa.delete(SigninThrottle).where(SigninThrottle.key == account.key))
    _give_back(address)


def prune(now: datetime) -> int:
    return db.session.execute(
        sa.delete(SigninThrottle).where(SigninThrottle.next_try_at < now - FORGET_AFTER)
    ).rowcount


def _key(kind: str, value: str) -> str:
    return sealing.digest(f"signin-throttle:{kind}", value)


def _take(key: str, free: int, now: datetime) -> Slot | None:
    for _ in range(RACE_ROUNDS):
        row = db.session.execute(
            sa.select(SigninThrottle.failures, SigninThrottle.next_try_at).where(
                SigninThrottle.key == key
            )
        ).first()
        if row is None:
            if _insert_first(key, free, now):
                return Slot(key, 1, None)
            continue
        failures, next_try_at = row
        if next_try_at > now:
            return None
        if _count_next(key, failures, free, now):
            return Slot(key, failures + 1, next_try_at)
    return None


def _insert_first(key: str, free: int, now: datetime) -> bool:
    insert = (
        postgresql.insert if db.session.get_bind().dialect.name == "postgresql" else sqlite.insert
    )
    statement = (
        insert(SigninThrottle)
        .values(key=key, failures=1, next_try_at=now + wait_after(1, free))
        .on_conflict_do_nothing(index_elements=["key"])
        .returning(SigninThrottle.key)
    )
    return db.session.execute(statement).first() is not None


def _count_next(key: str, failures: int, free: int, now: datetime) -> bool:
    """One failure more, if nobody else counted one since `failures` was read."""
    counted = db.session.execute(
        sa.update(SigninThrottle)
        .where(SigninThrottle.key == key, SigninThrottle.failures == failures)
        .values(failures=failures + 1, next_try_at=now + wait_after(failures + 1, free))
        .execution_options(synchronize_session=False)
    )
    return counted.rowcount == 1


def _give_back(slot: Slot) -> None:
    """Undo a slot's count, unless other tries have counted since (then theirs stand)."""
    if slot.next_try_was is None:
        db.session.execute(
            sa.delete(SigninThrottle).where(
                SigninThrottle.key == slot.key, SigninThrottle.failures == slot.failures
            )
        )
        return
    db.session.execute(
        sa.update(SigninThrottle)
        .where(SigninThrottle.key == slot.key, SigninThrottle.failures == slot.failures)
        .values(failures=slot.failures - 1, next_try_at=slot.next_try_was)
        .execution_options(synchronize_session=False)
    )
