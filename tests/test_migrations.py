"""Migrations on an empty database: the schema the models describe and the rollout table loaded."""

import os
from datetime import date

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from flask_migrate import upgrade

from portal import create_app
from portal.extensions import db
from portal.models import FilingTypeRule, Province
from tests.conftest import pg_database

# Per test run, so that runs in parallel never drop each other's database.
FRESH_PG_DATABASE = f"portal_migrations_test_{os.getpid()}"

# SPEC §2, the rollout table: batch, live date and (slug, name, abbreviation) per province.
ROLLOUT = {
    (1, date(2017, 12, 18)): [
        ("tianjin", "天津", "津"),
        ("gansu", "甘肃", "甘"),
        ("xizang", "西藏", "藏"),
        ("ningxia", "宁夏", "宁"),
        ("hainan", "海南", "琼"),
        ("xinjiang", "新疆", "新"),
        ("qinghai", "青海", "青"),
    ],
    (2, date(2018, 9, 10)): [
        ("zhejiang", "浙江", "浙"),
        ("sichuan", "四川", "蜀"),
        ("fujian", "福建", "闽"),
        ("shaanxi", "陕西", "陕"),
        ("chongqing", "重庆", "渝"),
        ("guangxi", "广西", "桂"),
        ("yunnan", "云南", "滇"),
    ],
    (3, date(2018, 9, 24)): [
        ("shanxi", "山西", "晋"),
        ("neimenggu", "内蒙古", "蒙"),
        ("heilongjiang", "黑龙江", "黑"),
        ("anhui", "安徽", "皖"),
        ("shandong", "山东", "鲁"),
        ("henan", "河南", "豫"),
        ("hunan", "湖南", "湘"),
        ("hubei", "湖北", "鄂"),
    ],
    (4, date(2020, 8, 17)): [
        ("beijing", "北京", "京"),
        ("shanghai", "上海", "沪"),
        ("guangdong", "广东", "粤"),
        ("jiangsu", "江苏", "苏"),
        ("hebei", "河北", "冀"),
        ("liaoning", "辽宁", "辽"),
        ("jilin", "吉林", "吉"),
        ("jiangxi", "江西", "赣"),
        ("guizhou", "贵州", "黔"),
    ],
}
FILING_TYPE_RULES = {
    "new_filing": True,
    "new_website": True,
    "new_access": True,
    "change_filing": True,
    "cancel_filing": False,
    "cancel_website": False,
    "cancel_access": False,
}


@pytest.fixture
def empty_database(backend, tmp_path):
    """The URL of a database with nothing in it: a new SQLite file or a new PostgreSQL database."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'fresh.sqlite3'}"
        return
    with pg_database(FRESH_PG_DATABASE) as url:
        yield url


@pytest.fixture
def fresh_app(env, empty_database):
    app = create_app({**env, "DATABASE_URL": empty_database})
    with app.app_context():
        yield app
        db.session.remove()
        db.engine.dispose()


@pytest.fixture
def upgraded(fresh_app):
    upgrade()
    return fresh_app


def _table_names() -> set[str]:
    return set(sa.inspect(db.engine).get_table_names())


def test_upgrade_on_an_empty_database_creates_every_table(fresh_app):
    assert _table_names() == set()
    upgrade()
    assert _table_names() == {table.name for table in db.metadata.sorted_tables} | {
        "alembic_version"
    }


def test_upgrade_loads_the_rollout_table(upgraded):
    rows = db.session.scalars(sa.select(Province)).all()
    loaded: dict[tuple, set] = {}
    for p in rows:
        loaded.setdefault((p.batch, p.live_from), set()).add((p.slug, p.name, p.abbreviation))
    assert len(rows) == 31
    assert loaded == {key: set(provinces) for key, provinces in ROLLOUT.items()}
    assert all(p.code_validity_hours == 24 and p.resend_limit == 2 for p in rows)


def test_upgrade_loads_each_province_with_its_authority(upgraded):
    tianjin = db.session.get(Province, "tianjin")
    guizhou = db.session.get(Province, "guizhou")
    assert (tianjin.live_from, tianjin.abbreviation, tianjin.authority) == (
        date(2017, 12, 18),
        "津",
        "天津市通信管理局",
    )
    assert guizhou.live_from == date(2020, 8, 17)
    authorities = db.session.scalars(sa.select(Province.authority)).all()
    assert all(authority.endswith("通信管理局") for authority in authorities)
    assert len(set(authorities)) == 31


def test_upgrade_loads_the_filing_type_rules(upgraded):
    rules = db.session.scalars(sa.select(FilingTypeRule)).all()
    assert {rule.type: rule.verification_required for rule in rules} == FILING_TYPE_RULES


def test_models_and_migrations_agree(upgraded):
    with db.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        differences = compare_metadata(context, db.metadata)
    assert differences == []


def test_downgrade_to_base_then_upgrade_again(upgraded):
    runner = upgraded.test_cli_runner()

    down = runner.invoke(args=["db", "downgrade", "base"])
    assert down.exit_code == 0, down.output
    db.engine.dispose()
    assert _table_names() <= {"alembic_version"}

    up = runner.invoke(args=["db", "upgrade"])
    assert up.exit_code == 0, up.output
    db.engine.dispose()
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Province)) == 31
    assert db.session.scalar(sa.select(sa.func.count()).select_from(FilingTypeRule)) == 7
