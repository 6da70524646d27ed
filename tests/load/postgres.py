"""A PostgreSQL of the benchmark's own, set up as a production server would be.

The machine's shared server runs Debian's defaults (shared_buffers 128 MB, random_page_cost
4), tuned for nothing: the sweep at 1,000,000 filings spends its time evicting dirty
buffers there, and the planner reads small sets by scanning whole tables. The benchmark
starts a throwaway cluster beside it (initdb in a temporary directory, as the `postgres`
user when run as root) with the usual production settings for a machine of this size, and
removes it afterwards. `--shared-postgres` measures on the machine's server instead.
"""

import argparse
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

import psycopg

BIN = Path("/usr/lib/postgresql/15/bin")
SETTINGS = {
    "shared_buffers": "4GB",  # a sixth of this machine's 24 GiB
    "effective_cache_size": "12GB",
    "work_mem": "32MB",
    "maintenance_work_mem": "512MB",
    "random_page_cost": "1.1",  # SSD
    "max_wal_size": "8GB",
    "checkpoint_timeout": "15min",
    "wal_compression": "lz4",  # pglz ("on") cost the sweep ~15 s of CPU (docs/performance.md)
    "max_connections": "200",
}


def _as_postgres(command: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


@contextmanager
def tuned_postgres(port: int):
    """Yields the admin URL (database `postgres`) of a fresh, tuned cluster on `port`."""
    directory = Path(tempfile.mkdtemp(prefix="portal-bench-pg-"))
    data = directory / "data"
    if os.geteuid() == 0:
        shutil.chown(directory, "postgres")
    initdb = [str(BIN / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "-E", "UTF8"]
    subprocess.run(_as_postgres([*initdb, "--no-sync"]), check=True, capture_output=True)
    options = " ".join(f"-c {name}={value}" for name, value in SETTINGS.items())
    options += f" -p {port} -k {directory} -c listen_addresses=127.0.0.1"
    pg_ctl = [str(BIN / "pg_ctl"), "-D", str(data), "-l", str(directory / "log"), "-w"]
    subprocess.run(_as_postgres([*pg_ctl, "-o", options, "start"]), check=True, capture_output=True)
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(_as_postgres([*pg_ctl, "-m", "fast", "stop"]), capture_output=True)
        shutil.rmtree(directory, ignore_errors=True)


SHARED_ADMIN = os.environ.get("BENCH_PG_ADMIN", "postgresql://postgres@127.0.0.1:5432/postgres")
# Another port lets two benchmarks run at once, each on a server of its own.
TUNED_PORT = int(os.environ.get("BENCH_PG_PORT", "5442"))


def add_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--shared-postgres",
        action="store_true",
        help="on the machine's PostgreSQL, not a tuned one of our own",
    )


def on_fresh_database(args: argparse.Namespace, name: str, measure: Callable) -> None:
    """`measure(args, database_url)` on an empty database `name`, on the server `args` chose."""
    with _server(args.shared_postgres) as admin_url:
        measure(args, fresh_database(admin_url, name))


@contextmanager
def _server(shared: bool):
    """The admin URL of the server to measure on: a tuned one of our own, or the shared one."""
    if shared:
        yield SHARED_ADMIN
        return
    with tuned_postgres(TUNED_PORT) as admin_url:
        yield admin_url


def fresh_database(admin_url: str, name: str) -> str:
    """An empty database `name` (dropped first if it exists); its URL."""
    with psycopg.connect(admin_url, autocommit=True) as connection:
        connection.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        connection.execute(f"CREATE DATABASE {name}")
    return admin_url.rsplit("/", 1)[0] + f"/{name}"
