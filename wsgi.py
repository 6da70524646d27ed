"""The WSGI entry point: `gunicorn wsgi:app`, `flask --app wsgi …`."""

from portal import create_app
from portal.schedule import start_in_process

app = create_app()
if not app.config["REDIS_URL"]:
    start_in_process(app)
