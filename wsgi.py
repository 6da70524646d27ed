"""The WSGI entry point: `gunicorn wsgi:app`, `flask --app wsgi …`."""

import gc
import sys

from portal import create_app
from portal.schedule import start_in_process
from portal.settings import SettingsError

# 4 is gunicorn's "App failed to load": a gunicorn worker refused so stops the master rather
# than being started again (gunicorn.conf.py refuses bad settings before any worker, though).
APP_LOAD_ERROR = 4

try:
    app = create_app()
except SettingsError as refused:
    print(f"portal refuses to start: {refused}", file=sys.stderr)  # one line, no traceback
    sys.exit(APP_LOAD_ERROR)
if not app.config["REDIS_URL"]:
    start_in_process(app)
# The app's ~170,000 objects from start-up live as long as the process: out of the collector's
# reach, a full collection no longer walks them (~100 ms, about once a thousand requests, every
# thread of the process waiting). Each gunicorn worker and `flask worker` imports this module.
gc.freeze()
