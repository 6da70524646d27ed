"""The portal as the benchmark serves it: `PORTAL_ENV=production` settings, plus the two
things a load generator needs and production refuses: a fixed captcha answer (given as
BENCH_CAPTCHA) and a session cookie sent over plain HTTP to 127.0.0.1.

    gunicorn -c gunicorn.conf.py tests.load.bench_app:app
"""

import os

from wsgi import app

app.config["CAPTCHA_TEST_ANSWER"] = os.environ.get("BENCH_CAPTCHA", "TEST")
app.config["SESSION_COOKIE_SECURE"] = False
