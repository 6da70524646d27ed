"""The WSGI entry point: `gunicorn wsgi:app`, `flask --app wsgi …`."""

import sys

from portal import create_app
from portal.schedule import start_in_process
from portal.settings import SettingsError

try:
    app = create_app()
except SettingsError as refused:
    sys.exit(f"portal refuses to start: {refused}")  # one line and a non-zero exit, no traceback
if not app.config["REDIS_URL"]:
    start_in_process(app)
