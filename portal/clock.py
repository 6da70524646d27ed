"""Time: stored in UTC, computed for the rules and shown in Asia/Shanghai."""

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

SHANGHAI = ZoneInfo("Asia/Shanghai")


def utcnow() -> datetime:
    return datetime.now(UTC)


def shanghai_date(moment: datetime) -> date:
    return moment.astimezone(SHANGHAI).date()


def next_day_noon(moment: datetime) -> datetime:
    """12:00 Asia/Shanghai on the day after `moment`, in UTC."""
    day = shanghai_date(moment) + timedelta(days=1)
    return datetime.combine(day, time(12), tzinfo=SHANGHAI).astimezone(UTC)


def iso_shanghai(moment: datetime | None) -> str | None:
    return moment.astimezone(SHANGHAI).isoformat() if moment else None
