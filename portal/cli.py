"""The `flask --app wsgi …` commands of SPEC §8."""

import json

import click
from flask import Flask
from flask.cli import AppGroup

from portal import demo, providers
from portal.clock import utcnow
from portal.extensions import db

providers_cli = AppGroup("providers", help="Access providers.")


@providers_cli.command("create")
@click.argument("name")
@click.option("--callback-url", help="Where status-change webhooks are POSTed.")
def create_provider(name: str, callback_url: str | None) -> None:
    """Create a provider; the last line is JSON with its API key and webhook secret, shown once."""
    provider, api_key = providers.create(name, callback_url, utcnow())
    db.session.commit()
    click.echo(f"created provider {provider.id} {provider.name}")
    click.echo(json.dumps({"api_key": api_key, "webhook_secret": provider.webhook_secret}))


@click.command("demo")
def load_demo() -> None:
    """Load demo data: a provider (its API key printed) and a few filings awaiting their codes."""
    api_key, filings = demo.load(utcnow())
    click.echo(f"demo provider API key: {api_key}")
    for filing in filings:
        click.echo(f"filing {filing.reference} in {filing.province_slug}: {filing.status}")
    click.echo("codes are in the development SMS inbox: /dev/sms")


def register(app: Flask) -> None:
    app.cli.add_command(providers_cli)
    app.cli.add_command(load_demo)
