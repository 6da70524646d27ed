"""The `flask --app wsgi …` commands of SPEC §8."""

import functools
import json

import click
import sqlalchemy as sa
from flask import Flask, current_app
from flask.cli import AppGroup
from rq import Queue
from sqlalchemy.exc import IntegrityError

from portal import accounts, audit, demo, jobs, providers, queues, schedule, two_factor, workers
from portal.clock import utcnow
from portal.extensions import db
from portal.models import Admin
from portal.protection import callback_urls, resealing, sealing

NOT_MIGRATED = "the database has no tables yet: run `flask --app wsgi db upgrade` first"


def on_a_migrated_database(callback):
    """A command run against a database `db upgrade` never ran on stops with one line, not a
    traceback from its first query."""

    @functools.wraps(callback)
    def checked(*args, **kwargs):
        if not sa.inspect(db.engine).has_table("alembic_version"):
            raise click.ClickException(NOT_MIGRATED)
        return callback(*args, **kwargs)

    return checked


providers_cli = AppGroup("providers", help="Access providers.")


@providers_cli.command("create")
@click.argument("name")
@click.option("--callback-url", help="Where status-change webhooks are POSTed.")
@on_a_migrated_database
def create_provider(name: str, callback_url: str | None) -> None:
    """Create a provider; the last line is JSON with its API key and webhook secret, shown once."""
    callback_url = (callback_url or "").strip() or None
    if callback_url:
        try:
            callback_urls.check_saved(callback_url)
        except callback_urls.Refused as refused:
            raise click.BadParameter(str(refused), param_hint="--callback-url") from refused
    try:
        provider, api_key = providers.create(name, callback_url, utcnow())
        db.session.commit()
    except IntegrityError as error:
        db.session.rollback()
        raise click.ClickException(f"a provider named {name!r} already exists") from error
    click.echo(f"created provider {provider.id} {provider.name}")
    click.echo(
        json.dumps({"api_key": api_key, "webhook_secret": providers.webhook_secret(provider)})
    )


@click.command("demo")
@on_a_migrated_database
def load_demo() -> None:
    """Load demo data: a provider, console accounts and a few filings awaiting their codes."""
    loaded = demo.load(utcnow())
    click.echo(f"demo provider API key: {loaded.api_key}")
    for filing in loaded.filings:
        click.echo(f"filing {filing.reference} in {filing.province_slug}: {filing.status}")
    click.echo("codes are in the development SMS inbox: /dev/sms")
    names = " and ".join(demo.DEMO_ADMINS)
    click.echo(f"console /admin/: {names}, password {loaded.admin_password}")
    for username, secret in loaded.totp_secrets.items():
        click.echo(
            f"  {username}: TOTP secret {secret} (`flask --app wsgi admins code {username}`)"
        )


admins_cli = AppGroup("admins", help="Console accounts.")


@admins_cli.command("create")
@click.argument("username")
@click.option("--province", "province", help="The province slug a province admin runs.")
@click.option("--national", is_flag=True, help="A national admin (all provinces, the rollout).")
@click.option("--password", help="Prompted for when not given.")
@on_a_migrated_database
def create_admin(username: str, province: str | None, national: bool, password: str | None):
    """Create a console account: a province admin (--province SLUG) or a national one (--national).

    It is enrolled at once: the last line is JSON with its `totp_uri` and recovery codes."""
    if bool(province) == national:
        raise click.UsageError("give exactly one of --province SLUG and --national")
    if password is None:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    now = utcnow()
    try:
        admin = accounts.create(username, password, province, now)
    except accounts.AccountError as error:
        raise click.ClickException(str(error)) from error
    enrolment = accounts.enrol_two_factor(admin, now)
    db.session.commit()
    click.echo(f"created admin {admin.username} ({admin.province_slug or 'national'})")
    _echo_enrolment(admin, enrolment)


@admins_cli.command("reset-2fa")
@click.argument("username")
@on_a_migrated_database
def reset_two_factor(username: str) -> None:
    """Enrol the account anew (a lost phone): the last line is JSON with its new `totp_uri`."""
    admin = _admin_named(username)
    enrolment = accounts.enrol_two_factor(admin, utcnow())
    db.session.commit()
    _echo_enrolment(admin, enrolment)


@admins_cli.command("code")
@click.argument("username")
@on_a_migrated_database
def current_code(username: str) -> None:
    """Print the account's current TOTP code, for a demo without an authenticator app."""
    if current_app.config["PRODUCTION"]:
        raise click.ClickException("admins code is refused in production")
    admin = _admin_named(username)
    if not admin.enrolled:
        raise click.ClickException(f"{username} has not enrolled a second factor yet")
    click.echo(two_factor.current_code(admin, utcnow()))


def _admin_named(username: str) -> Admin:
    admin = db.session.scalar(sa.select(Admin).where(Admin.username == username))
    if admin is None:
        raise click.ClickException(f"no console account named {username!r}")
    return admin


def _echo_enrolment(admin: Admin, enrolment: two_factor.Enrolment) -> None:
    """Shown only once: the secret for the authenticator app and the recovery codes."""
    shown_once = {
        "username": admin.username,
        "totp_uri": enrolment.totp_uri,
        "recovery_codes": enrolment.recovery_codes,
    }
    click.echo(json.dumps(shown_once, ensure_ascii=False))


@click.command("sweep")
@on_a_migrated_database
def sweep() -> None:
    """Run the due expiry sweep and noon resend once, now, and relay anything undelivered."""
    counts = jobs.sweep()
    click.echo(json.dumps(counts))


@click.command("worker")
@click.option("--burst", is_flag=True, help="Stop when the queues are empty.")
@click.option(
    "--queues",
    "names",
    default=",".join(queues.QUEUE_NAMES),
    show_default=True,
    help="The queues to take jobs from, in this order, comma-separated.",
)
@on_a_migrated_database
def worker(burst: bool, names: str) -> None:
    """An RQ worker with the scheduler (retries and delayed jobs run only with it), which takes
    over the scheduling within seconds when another worker's scheduler dies (portal/workers.py)."""
    chosen = [_queue(name.strip()) for name in names.split(",") if name.strip()]
    if not chosen:
        raise click.BadParameter("name at least one queue", param_hint="--queues")
    workers.Worker(chosen, connection=chosen[0].connection).work(burst=burst, with_scheduler=True)


@click.command("cron")
@on_a_migrated_database
def cron() -> None:
    """The one process per deployment that enqueues the periodic jobs (RQ's cron); it outlives
    Redis outages, starting again when Redis answers."""
    schedule.run_cron(_queue(queues.MAINTENANCE).connection)


data_cli = AppGroup("data", help="Personal data at rest.")


@data_cli.command("reseal")
@click.option("--batch", default=1000, show_default=True, help="Rows per transaction.")
@on_a_migrated_database
def reseal(batch: int) -> None:
    """Seal every value not yet under the current CRYPTO_SUITE and key again (after a key
    rotation or a suite switch); prints the counts per column as JSON."""
    if batch < 1:
        raise click.BadParameter("at least 1", param_hint="--batch")
    try:
        counts = resealing.reseal(batch)
    except sealing.Unsealable as error:
        raise click.ClickException(f"cannot open {error}; is every key in DATA_KEY?") from error
    click.echo(json.dumps(counts))


def _queue(name: str) -> Queue:
    if name not in queues.QUEUE_NAMES:
        known = ", ".join(queues.QUEUE_NAMES)
        raise click.BadParameter(f"no queue {name!r} (the queues: {known})", param_hint="--queues")
    queue = queues.rq_queue(name)
    if queue is None:
        raise click.ClickException("REDIS_URL is not set: without Redis, jobs run in-process")
    return queue


audit_cli = AppGroup("audit", help="The audit log.")


@audit_cli.command("verify")
@on_a_migrated_database
def verify_audit() -> None:
    """Check the audit chain: exit 0 when intact, 1 naming the first entry that does not match."""
    verdict = audit.verify()
    click.echo(json.dumps(verdict.as_json(), ensure_ascii=False))
    if not verdict.intact:
        raise SystemExit(1)


def register(app: Flask) -> None:
    for command in (providers_cli, admins_cli, audit_cli, data_cli, load_demo, sweep, worker, cron):
        app.cli.add_command(command)
