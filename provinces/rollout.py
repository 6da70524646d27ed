"""The rollout table of SPEC §2, shipped as `rollout.csv` and loaded into the database."""

import csv
from dataclasses import dataclass
from datetime import date
from pathlib import Path

ROLLOUT_CSV = Path(__file__).with_name("rollout.csv")


@dataclass(frozen=True)
class RolloutRow:
    slug: str
    name: str
    abbreviation: str
    authority: str
    batch: int
    live_from: date


def rows() -> list[RolloutRow]:
    with ROLLOUT_CSV.open(encoding="utf-8") as source:
        return [
            RolloutRow(
                slug=row["slug"],
                name=row["name"],
                abbreviation=row["abbreviation"],
                authority=row["authority"],
                batch=int(row["batch"]),
                live_from=date.fromisoformat(row["live_from"]),
            )
            for row in csv.DictReader(source)
        ]
