"""The portal's home page `/` (SPEC §5): the provinces whose check is live, each linking to its
own pages, and the console's sign-in. Read from the database per request, like the live dates."""

import sqlalchemy as sa
from flask import Blueprint, render_template

from portal.clock import utcnow
from portal.extensions import db
from portal.messages import HOME
from portal.models import Province

bp = Blueprint("home", __name__)


@bp.get("/")
def index():
    return render_template("home.html", provinces=live_provinces(), text=HOME)


def live_provinces() -> list[Province]:
    """In the order of their slugs, which is pinyin order: how a Chinese reader looks one up."""
    now = utcnow()
    provinces = db.session.scalars(sa.select(Province).order_by(Province.slug))
    return [province for province in provinces if province.is_live(now)]
