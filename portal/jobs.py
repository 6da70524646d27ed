"""The RQ job entry points: module-level, taking ids, idempotent, each in an app context of
its own. The work is in portal/delivery/ (outbox, sending, webhooks, relay) and
portal/sweeps.py; the outbox queues these jobs by name (`portal.jobs.<name>`).
"""

import functools
from collections.abc import Callable

from flask import current_app, has_app_context

from portal import captchas, sweeps
from portal.clock import utcnow
from portal.delivery import sending, webhooks


def in_app_context(func: Callable) -> Callable:
    """Run a job in an app context of its own, so it has its own database session."""

    @functools.wraps(func)
    def wrapper(*args):
        app = current_app._get_current_object() if has_app_context() else _worker_app()
        with app.app_context():
            return func(*args)

    return wrapper


@functools.cache
def _worker_app():
    """The app of a plain `rq worker`, built once per process."""
    from portal import create_app  # the app's package imports this module

    return create_app()


class TextNotSent(Exception):
    pass


@in_app_context
def deliver_sms(message_id: int) -> None:
    """One text, as `deliver_sms_batch` sends it: the job of a text's retry. It raises while
    the text has attempts left, so that RQ runs it again after the next delay."""
    if sending.send_texts([message_id]):
        raise TextNotSent(f"text {message_id} not sent")


@in_app_context
def deliver_sms_batch(message_ids: list[int]) -> None:
    """Sends the texts still to send; each that fails gets a `deliver_sms` job for its retry."""
    for message_id, attempts in sending.send_texts(message_ids):
        sending.queue_retry(message_id, attempts)


@in_app_context
def deliver_event(event_id: str) -> None:
    if (event := webhooks.attempt(event_id)) is not None:
        # RQ runs the job again after its next delay.
        raise webhooks.DeliveryFailed(f"event {event_id}: attempt {event.attempts} failed")


@in_app_context
def deliver_event_batch(event_ids: list[str]) -> None:
    """`deliver_event` for each; an event that fails is handed to a job of its own for its
    retry."""
    for event_id in event_ids:
        if (event := webhooks.attempt(event_id)) is not None:
            webhooks.queue_retry(event)


@in_app_context
def refill_captchas() -> int:
    """Top up the pool of ready-made captcha images (queued by a page that finds it low)."""
    return captchas.refill_pool()


@in_app_context
def sweep() -> dict[str, int]:
    """The periodic job: expiry, the noon resend, and the relay of anything undelivered."""
    return sweeps.run_due(utcnow())
