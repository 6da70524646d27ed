"""Failed sign-ins slow down the address and the account they came from (SPEC §10).

Two keys count failures: the client address (IPv6 by its /64), and the account name
*with* that address. So an attacker's failures never delay the owner signing in from
elsewhere, and an unknown name is counted exactly like a known one. After FREE
failures a key waits 8 s before its next try, the wait doubling with each failure up
to 15 minutes; nothing ever locks an account.

Each try takes a slot before the password is checked: one `UPDATE … SET failures =
failures + 1` of the key's row counts it as a failure in advance, so parallel tries cannot
check more passwords than the counters allow, and each counts in turn. A try that succeeds
gives its slots back: the counts of tries beside it stand. Keys quiet for a day are deleted
by the sweep, which forgets their failures. Keys are keyed digests: the table holds no
address and no name.
"""

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


def wait_after(failures: int, free: int) -> timedelta:
    if failures < free:
        return timedelta(0)
    return min(FIRST_WAIT * 2 ** (failures - free), LONGEST_WAIT)


def reserve(username: str, address: str, now: datetime) -> list[str] | None:
    """A slot of (account, address) and one of the address, or None while either must wait."""
    account = _key("account", f"{username}\n{address}")
    if not _take(account, ACCOUNT_FREE_FAILURES, now):
        return None
    address_key = _key("address", address)
    if not _take(address_key, ADDRESS_FREE_FAILURES, now):
        _give_back(account, ACCOUNT_FREE_FAILURES, now)
        return None
    return [account, address_key]


def release(slots: list[str], now: datetime) -> None:
    """The try succeeded: the account's failures from this address are forgotten, and the
    address gets its slot back."""
    account, address = slots
    db.session.execute(sa.delete(SigninThrottle).where(SigninThrottle.key == account))
    _give_back(address, ADDRESS_FREE_FAILURES, now)


def prune(now: datetime) -> int:
    return db.session.execute(
        sa.delete(SigninThrottle).where(SigninThrottle.next_try_at < now - FORGET_AFTER)
    ).rowcount


def _key(kind: str, value: str) -> str:
    return sealing.digest(f"signin-throttle:{kind}", value)


def _take(key: str, free: int, now: datetime) -> bool:
    """Count one failure more for the key in advance, unless it must wait. The count is one
    statement on the row, so tries at once each count in turn: none is refused for trying
    beside another (an office's officers signing in behind one address)."""
    for _ in range(2):  # a key's first try inserts its row; one inserted meanwhile is updated
        counted = db.session.execute(
            sa.update(SigninThrottle)
            .where(SigninThrottle.key == key, _may_try(free, now))
            .values(
                failures=SigninThrottle.failures + 1,
                next_try_at=_next_try(SigninThrottle.failures + 1, free, now),
            )
            .returning(SigninThrottle.key)
            .execution_options(synchronize_session=False)
        ).first()
        if counted is not None or _insert_first(key, free, now):
            return True
    return False


def _may_try(free: int, now: datetime) -> sa.ColumnElement[bool]:
    """A key under its free failures never waits, whatever time the last try wrote: tries at
    once read the clock before their turn at the row, so an earlier reading may come later."""
    return sa.or_(SigninThrottle.failures < free, SigninThrottle.next_try_at <= now)


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


def _give_back(key: str, free: int, now: datetime) -> None:
    """Undo one try's count; the counts of other tries stand, and so does a wait they earned."""
    failures = SigninThrottle.failures - 1
    db.session.execute(
        sa.update(SigninThrottle)
        .where(SigninThrottle.key == key, SigninThrottle.failures > 0)
        .values(
            failures=failures,
            next_try_at=sa.case((failures < free, _at(now)), else_=SigninThrottle.next_try_at),
        )
        .execution_options(synchronize_session=False)
    )


def _next_try(failures: sa.ColumnElement[int], free: int, now: datetime) -> sa.Case:
    """When a key with `failures` may try again (`wait_after`), in SQL: a case per wait."""
    waits = []
    count = free
    while (wait := wait_after(count, free)) < LONGEST_WAIT:
        waits.append((failures == count, _at(now + wait)))
        count += 1
    return sa.case((failures < free, _at(now)), *waits, else_=_at(now + LONGEST_WAIT))


def _at(moment: datetime) -> sa.ColumnElement[datetime]:
    return sa.literal(moment, SigninThrottle.next_try_at.type)
