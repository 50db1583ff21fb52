"""Golden files: fixed small scenarios and the exact output of every policy.

Each folder under ``tests/golden/`` is one scenario: ``partners.csv``, ``customers.csv``
and optionally ``rules.toml`` (a copy of ``data/rules.toml`` with one key changed). The
expected output of each policy is ``expected-<policy>.csv`` with the columns
``tenant_id, outcome, partner_id, psm_email, queue, reason, trace``; the test compares
the run with it byte for byte, so any change in assignments or trace wording shows up as
a diff.

- ``basic``: every reason code occurs (P06 is switched off by the scenario's rules).
- ``round_robin_turns``: one pool of three partners, two of them assigned before, ten
  customers: the rotation, never-assigned partner first.
- ``capacity_pressure``: two overlapping pools (and a third within them) that fill up.
- ``split_by_workload``: up to 3 partners per customer, ``defender`` a CSS workload,
  partners that take some sizes: the greedy cover and its tie by turn (T01, T02, T08), a
  cover needing 4 partners (T03: no split, no_partner_match), a CSS part (T04) and an
  all-CSS customer (T05), size removing partners (T06, T07) and leaving none (T09), and a
  cover of 2 whose partner is full (T10: capacity_exhausted).
  Output has one row per part, with ``part`` and ``workloads``.

To regenerate the expected files after an intended change, run

    FRP_UPDATE_GOLDEN=1 .venv/bin/pytest tests/test_golden.py

then read the diff (``git diff tests/golden``) and check it by hand before committing.
"""

from __future__ import annotations

import os
from pathlib import Path

import polars as pl
import pytest

from engine.assign import simulate
from engine.reasons import Policy
from engine.rules import load_rules
from engine.schema import validate_customers, validate_partners

GOLDEN = Path(__file__).resolve().parent / "golden"
SCENARIOS = ("basic", "round_robin_turns", "capacity_pressure", "split_by_workload")
UPDATE = os.environ.get("FRP_UPDATE_GOLDEN") == "1"


def read_csv(path: Path) -> pl.DataFrame:
    """A CSV as text, the way the importers read it (every cell a string, empty = null)."""
    return pl.read_csv(path, infer_schema=False)


def run_csv(scenario: str, policy: Policy) -> str:
    folder = GOLDEN / scenario
    partners = validate_partners(
        read_csv(folder / "partners.csv"), f"{scenario}/partners.csv", first_row=2, row_label="line"
    )
    customers = validate_customers(
        read_csv(folder / "customers.csv"),
        f"{scenario}/customers.csv",
        first_row=2,
        row_label="line",
    )
    rules_path = folder / "rules.toml"
    rules = load_rules(rules_path if rules_path.exists() else None)
    sim = simulate(partners, customers, rules, policy)
    out = sim.assignments
    if "workloads" in out.columns:  # one row per part: its workloads as the CSV lists them
        out = out.with_columns(pl.col("workloads").list.join(";"))
    return out.write_csv()


def test_every_scenario_has_its_inputs() -> None:
    assert sorted(p.name for p in GOLDEN.iterdir() if p.is_dir()) == sorted(SCENARIOS)
    for scenario in SCENARIOS:
        assert (GOLDEN / scenario / "partners.csv").is_file()
        assert (GOLDEN / scenario / "customers.csv").is_file()


@pytest.mark.parametrize("policy", list(Policy), ids=lambda p: p.value)
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_output_matches_the_golden_file(scenario: str, policy: Policy) -> None:
    expected_path = GOLDEN / scenario / f"expected-{policy.value}.csv"
    got = run_csv(scenario, policy)
    if UPDATE:
        expected_path.write_text(got, encoding="utf-8")
    expected = expected_path.read_text(encoding="utf-8")
    # Line by line, so that a failure shows which customer changed.
    assert got.splitlines() == expected.splitlines()
    assert got == expected
