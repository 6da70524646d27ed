"""The development SMS inbox at `/dev/sms`: what the `file` backend has sent. Never in production."""

import json
from pathlib import Path

from flask import Blueprint, current_app, render_template

bp = Blueprint("devsms", __name__, url_prefix="/dev")

SHOWN = 50


@bp.get("/sms")
def inbox():
    path = Path(current_app.config["SMS_FILE_PATH"])
    lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
    messages = [json.loads(line) for line in reversed(lines[-SHOWN:])]
    return render_template(
        "dev/sms.html", messages=messages, backend=current_app.config["SMS_BACKEND"]
    )
