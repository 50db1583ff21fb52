"""Warming the compiled selection loop ahead of a server's first large what-if.

``engine.jit.warm`` must load the machine code a real run then uses (numba keeps one per
type signature: a warmed overload of other types would be loaded for nothing, and the
run would load its own on the click), and a failed warming must change nothing for the
runs that follow, in the engine or on the page.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest

import engine.optimal
from bench.world import ROOM_SCALE, make_customers, make_partners, write_parquet
from engine.assign import simulate
from engine.reasons import Policy
from engine.rules import load_rules
from store.files import read_partners
from tests.app_helpers import open_app, run_simulation
from ui.simulation import COMPILED_FROM_SERVER, LATEST_KEY
from ui.simulation import warm as warming

ROOT = Path(__file__).resolve().parent.parent

#: In a fresh interpreter: warm, then real runs of every policy, with and without a split,
#: in a world with room and in a capacity-bound one (whose misses the split takes, giving
#: parts through Picker.give); each dispatcher's signatures after warming and after the
#: runs, and how many parts were given from Python.
_SIGNATURES_AFTER_RUNS = """
import json, sys
from bench.world import make_customers, make_partners
from engine import jit
from engine.assign import simulate
from engine.rules import load_rules

def signatures():
    return {k.__name__: sorted(map(str, k.signatures)) for k in jit.KERNELS}

jit.warm()
warmed = signatures()
customers = make_customers(3_000, 5)
rules = load_rules()
parts = 0
for scale in (1, 40):
    partners = make_partners(150, 5, scale)
    for split in (1, 2):
        ruled = rules.replace(max_partners_per_customer=split)
        for policy in ("round-robin", "weighted", "least-loaded", "optimal"):
            sim = simulate(partners, customers, ruled, policy, compiled=True)
            if sim.parts is not None:  # the splitter's, each given through Picker.give
                parts += int(sim.parts["chosen"].is_not_null().sum())
json.dump({"warmed": warmed, "after": signatures(), "parts": parts}, sys.stdout)
"""


def test_warming_loads_the_overloads_real_runs_use() -> None:
    done = subprocess.run(
        [sys.executable, "-c", _SIGNATURES_AFTER_RUNS],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
        check=True,
    )
    got = json.loads(done.stdout)
    assert got["parts"] > 0, "no split part was given: Picker.give was not exercised"
    for name, warmed in got["warmed"].items():
        assert len(warmed) == 1, f"{name}: warming loaded {warmed}"
        assert got["after"][name] == warmed, f"{name}: the runs needed another overload"


_WARM_TWICE = """
import json, sys
from engine import jit
from engine.reasons import Policy
json.dump([jit.warm([Policy.ROUND_ROBIN]), jit.warm([Policy.ROUND_ROBIN])], sys.stdout)
"""


def test_warming_says_whether_it_compiled(tmp_path: Path) -> None:
    """True only when machine code was compiled, not loaded: ``frp simulate`` collects a
    compile's garbage (its collector is paused) and nothing else."""

    def warm_twice() -> list[bool]:
        done = subprocess.run(
            [sys.executable, "-c", _WARM_TWICE],
            cwd=ROOT,
            env={**os.environ, "NUMBA_CACHE_DIR": str(tmp_path)},
            capture_output=True,
            text=True,
            timeout=240,
            check=True,
        )
        return json.loads(done.stdout)

    assert warm_twice() == [True, False]  # an empty cache: compiled, then already loaded
    assert warm_twice() == [False, False]  # the cache filled: loaded


@pytest.fixture(scope="module")
def room_world() -> tuple:
    return make_partners(120, 3, ROOM_SCALE), make_customers(2_000, 3)


@pytest.mark.parametrize("policy", list(Policy))
def test_a_warming_that_fails_halfway_changes_no_run(
    policy: Policy, room_world: tuple, monkeypatch: pytest.MonkeyPatch, caplog
) -> None:
    """OR-Tools' plan fails after the other kernels are loaded: the warming says so in the
    log, and every policy's compiled run then gives the Python loop's rows."""

    def broken(*args: object) -> None:
        raise RuntimeError("the solver is missing")

    partners, customers = room_world
    rules = load_rules()
    with monkeypatch.context() as patched:
        patched.setattr(engine.optimal, "plan", broken)
        assert warming.warm_quietly() is False
    assert "could not warm" in caplog.text and "the solver is missing" in caplog.text
    compiled = simulate(partners, customers, rules, policy, compiled=True)
    python = simulate(partners, customers, rules, policy, compiled=False)
    assert compiled.assignments.equals(python.assignments)
    assert np.count_nonzero(compiled.assignments["partner_id"].is_not_null()) > 0


def test_the_simulate_page_warms_once_per_process_and_a_failure_fails_no_page(
    demo_db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import engine.jit

    calls: list[int] = []

    def broken() -> None:
        calls.append(1)
        raise RuntimeError("no machine code today")

    monkeypatch.setattr(engine.jit, "warm", broken)
    monkeypatch.setattr(warming, "_thread", None)  # as in a process that has not warmed yet
    for page in ("pages/data.py", "pages/capacity.py", "pages/fairness.py"):
        open_app(page)
    assert warming._thread is None  # only a visit of the Simulate page warms
    at = open_app("pages/simulate.py")
    thread = warming.in_background()
    thread.join(timeout=60)
    assert calls == [1] and thread.daemon
    at.radio(key="cohort_source").set_value("synthetic")
    at.run()
    run_simulation(at, ["round-robin", "optimal"], syn_size=COMPILED_FROM_SERVER)
    assert calls == [1]  # the page's runs started no other warming
    sims = at.session_state[LATEST_KEY]
    assert {p: s.assignments.height for p, s in sims.items()} == {
        "round-robin": COMPILED_FROM_SERVER,
        "optimal": COMPILED_FROM_SERVER,
    }


@pytest.fixture(scope="module")
def roomy_world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Partners files with room for 2M and for 55k customers, and a cohort file of
    COMPILED_FROM rows and one of 10 (frp simulate's early guess reads only the count)."""
    from engine.columns import CUSTOMER_SCHEMA, PARTNER_SCHEMA
    from engine.policies import COMPILED_FROM

    folder = tmp_path_factory.mktemp("roomy")
    partners, customers = PARTNER_SCHEMA, CUSTOMER_SCHEMA
    files = {
        "roomy": write_parquet(make_partners(2_000, 1, ROOM_SCALE), partners, folder / "r.parquet"),
        "bound": write_parquet(make_partners(2_000, 1), partners, folder / "b.parquet"),
        "large": write_parquet(make_customers(COMPILED_FROM, 1), customers, folder / "l.parquet"),
    }
    files["small"] = folder / "s.parquet"
    pl.read_parquet(files["large"]).head(10).write_parquet(files["small"])
    files["csv"] = folder / "l.csv"
    return files


def test_frp_simulate_warms_while_reading_only_when_the_run_will_likely_compile(
    roomy_world: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    import engine.jit
    from cli.assignment import _warm_while_reading

    calls: list[list[Policy]] = []
    monkeypatch.setattr(engine.jit, "warm", lambda policies: calls.append(list(policies)))
    partners = {k: read_partners(roomy_world[k]) for k in ("roomy", "bound")}
    thread = _warm_while_reading(partners["roomy"], str(roomy_world["large"]), "weighted")
    assert thread is not None and thread.daemon
    thread.join(timeout=60)
    assert calls == [[Policy.WEIGHTED]]  # only the policy the run will use
    for who, cohort in [
        ("bound", "large"),  # 55,245 free seats: the run stays in Python
        ("roomy", "small"),  # 10 customers
        ("roomy", "csv"),  # no row count without reading it
        ("roomy", "missing"),  # the read says what is wrong, not this guess
    ]:
        path = str(roomy_world.get(cohort, roomy_world["small"].with_name("nothing.parquet")))
        assert _warm_while_reading(partners[who], path, "round-robin") is None, (who, cohort)
    assert len(calls) == 1


def test_a_warming_that_fails_while_reading_changes_no_result(
    roomy_world: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import cli.assignment
    import engine.jit
    from cli.main import main

    tried: list[object] = []

    def broken(policies: object) -> None:
        tried.append(policies)
        raise RuntimeError("no machine code today")

    args = ["simulate", "--partners", roomy_world["roomy"], "--customers", roomy_world["large"]]
    monkeypatch.setattr(engine.jit, "warm", broken)
    assert main([*map(str, args), "--out", str(tmp_path / "warmed.parquet")]) == 0
    assert tried  # the thread started before the read, and its failure went nowhere
    monkeypatch.setattr(cli.assignment, "_warm_while_reading", lambda *a: None)
    assert main([*map(str, args), "--out", str(tmp_path / "cold.parquet")]) == 0
    warmed, cold = (pl.read_parquet(tmp_path / f"{n}.parquet") for n in ("warmed", "cold"))
    assert warmed.equals(cold) and warmed["partner_id"].is_not_null().sum() > 50_000
