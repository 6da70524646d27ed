"""The 备案短信核验 portal: `create_app` builds it from the environment."""

import os
from collections.abc import Mapping
from pathlib import Path

import sqlalchemy as sa
from flask import Flask, render_template, request
from flask_wtf.csrf import CSRFError
from redis import Redis
from werkzeug.exceptions import HTTPException
from werkzeug.middleware.proxy_fix import ProxyFix

from portal import admin, cli, devsms, monitoring, queues, rules_cache, settings
from portal.api import routes as api_routes
from portal.delivery import gateway_from_config, receipts
from portal.extensions import csrf, db, migrate
from portal.messages import BAD_REQUEST, FORBIDDEN, PAGE_NOT_FOUND, PROVINCE_NOT_OPEN, Outcome
from portal.protection import headers, limits, redacted_logs, signing
from provinces import home, pages, rollout

ROOT = Path(__file__).resolve().parent.parent
INSTANCE_PATH = ROOT / "instance"


def create_app(env: Mapping[str, str] | None = None) -> Flask:
    """The app, configured from `os.environ` overlaid with `env` (tests pass theirs here)."""
    app = Flask(__name__, template_folder=str(ROOT / "templates"), instance_path=str(INSTANCE_PATH))
    app.config.update(settings.from_env({**os.environ, **(env or {})}, app.instance_path))
    app.config["MAX_CONTENT_LENGTH"] = 1024 * 1024
    app.session_interface = signing.SessionInterface()
    redacted_logs.install(app)
    app.wsgi_app = _ipv4_clients_unmapped(app.wsgi_app)
    if proxies := app.config["TRUSTED_PROXIES"]:
        # Behind N reverse proxies the client is the N-th address from the right.
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=proxies, x_proto=proxies)

    db.init_app(app)
    migrate.init_app(app, db, directory=str(ROOT / "migrations"))
    csrf.init_app(app)
    limits.init_app(app)
    headers.init_app(app)
    monitoring.init_app(app)
    rules_cache.init_app(app)
    with app.app_context():
        if db.engine.dialect.name == "sqlite":
            sa.event.listen(db.engine, "connect", _sqlite_pragmas)
    redis = (
        Redis.from_url(app.config["REDIS_URL"], **app.config["REDIS_OPTIONS"])
        if app.config["REDIS_URL"]
        else None
    )
    if redis is not None:
        queues.init_app(app, redis)
    app.extensions["sms"] = gateway_from_config(app.config, redis)

    admin.login_manager.init_app(app)
    app.register_blueprint(admin.bp)
    app.register_blueprint(api_routes.bp)
    app.register_blueprint(api_routes.reference)
    csrf.exempt(api_routes.bp)
    app.register_blueprint(home.bp)
    app.register_blueprint(receipts.bp)
    csrf.exempt(receipts.bp)
    for row in rollout.rows():
        app.register_blueprint(
            pages.bp,
            name=f"province_{row.slug}",
            url_prefix=f"/{row.slug}",
            url_defaults={"province": row.slug},
        )
    if not app.config["PRODUCTION"]:
        app.register_blueprint(devsms.bp)
    app.register_error_handler(HTTPException, _error_page)
    cli.register(app)
    return app


def _ipv4_clients_unmapped(wsgi_app):
    """gunicorn's dual-stack socket (`[::]`) sees an IPv4 client as ::ffff:a.b.c.d: every
    reader of the client address (limits, logs, sign-in throttling, METRICS_ALLOW) gets a.b.c.d."""

    def app(environ, start_response):
        address = environ.get("REMOTE_ADDR") or ""
        if address.startswith("::ffff:") and "." in address:
            environ["REMOTE_ADDR"] = address.removeprefix("::ffff:")
        return wsgi_app(environ, start_response)

    return app


def _sqlite_pragmas(connection, _record) -> None:
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


def _error_page(error: HTTPException):
    headers = dict(error.get_headers())
    headers.pop("Content-Type", None)
    if request.path.startswith("/api/"):
        problem = api_routes.ApiProblem(
            error.code or 500, error.name.lower().replace(" ", "_"), error.name
        )
        response = api_routes.problem_response(problem)
        response.headers.update(headers)
        return response
    if isinstance(error, CSRFError):
        message = "页面已过期，请刷新页面后重新提交。"
        if request.headers.get("HX-Request"):
            headers["HX-Refresh"] = "true"  # htmx swaps no 400: reload for a fresh token
    elif error.code == 429:
        message = Outcome.TOO_MANY_ATTEMPTS.message
    elif error.code == 404:
        message = PROVINCE_NOT_OPEN if error.description == PROVINCE_NOT_OPEN else PAGE_NOT_FOUND
    elif error.code == 400:
        message = BAD_REQUEST
    elif error.code == 403:
        message = FORBIDDEN
    else:
        message = error.name
    return render_template("errors/page.html", message=message), error.code, headers
