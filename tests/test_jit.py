"""The compiled selection loop (engine.jit) makes exactly the Python loop's picks.

``engine.policies.select_python`` is the reference; ``select`` runs the numba kernels.
Both are run on the same random state (pools sharing partners, loads near their limits,
stamps, a plan for ``optimal``) and on whole random worlds with quotas, pauses and
declines, and must give identical Choices and leave identical ledgers, for every policy.
"""

from __future__ import annotations

from functools import partial
from typing import Any
from unittest import mock

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import engine.assign
from engine.jit import Picker, select_compiled
from engine.policies import Choices, Ledger, _empty_choices, select, select_python
from engine.reasons import Policy
from engine.rules import load_rules
from tests.strategies import World, split_worlds, worlds

POLICIES = list(Policy)
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def states(draw: st.DrawFn) -> dict[str, Any]:
    """Partners with capacities, quotas below them, loads and stamps; overlapping pools;
    customers walking them (some with no pool); a plan that may promise more than fits."""
    n = draw(st.integers(1, 12))
    cap = draw(st.lists(st.integers(0, 6), min_size=n, max_size=n))
    limit = [min(c, draw(st.integers(0, 7))) for c in cap]
    load = [draw(st.integers(0, max(lim, 0))) for lim in limit]
    stamps = draw(st.lists(st.one_of(st.none(), st.integers(1, 30)), min_size=n, max_size=n))
    n_pools = draw(st.integers(1, 6))
    pools = [
        np.array(sorted(draw(st.sets(st.integers(0, n - 1), min_size=1, max_size=n))))
        for _ in range(n_pools)
    ]
    pool_of = np.array(
        draw(st.lists(st.integers(-1, n_pools - 1), min_size=0, max_size=80)), dtype=np.int32
    )
    allotment = [
        {int(i): draw(st.integers(0, 4)) for i in draw(st.permutations(p.tolist()))} for p in pools
    ]
    return {
        "cap": cap,
        "limit": limit,
        "load": load,
        "stamps": stamps,
        "pools": pools,
        "pool_of": pool_of,
        "allotment": allotment,
    }


def ledger_of(s: dict[str, Any]) -> Ledger:
    ledger = Ledger.start(
        np.array(s["cap"]), np.array(s["load"]), s["stamps"], np.array(s["limit"])
    )
    ledger.register_pools(s["pools"])
    return ledger


def same(a: Choices, b: Choices) -> None:
    for name in ("chosen", "prev", "n_full", "load_after"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
        assert getattr(a, name).dtype == getattr(b, name).dtype, name


def same_ledger(a: Ledger, b: Ledger) -> None:
    assert a.counter == b.counter
    for name in ("load", "stamp", "full_count"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)


@pytest.mark.parametrize("policy", POLICIES)
@SETTINGS
@given(s=states())
def test_compiled_picks_equal_the_python_loop(policy: Policy, s: dict[str, Any]) -> None:
    python, compiled = ledger_of(s), ledger_of(s)
    expected = select_python(policy, python, s["pools"], s["pool_of"], s["allotment"])
    got = select(policy, compiled, s["pools"], s["pool_of"], s["allotment"], compiled=True)
    same(got, expected)
    same_ledger(compiled, python)


@pytest.mark.parametrize("policy", POLICIES)
@SETTINGS
@given(s=states())
def test_stopping_at_each_miss_and_resuming_changes_nothing(
    policy: Policy, s: dict[str, Any]
) -> None:
    """The split hook's contract: the kernel stops at a customer it cannot place, Python
    handles it (here: records the miss as the kernel would) and the kernel resumes."""
    plain, stopping = ledger_of(s), ledger_of(s)
    expected = select(policy, plain, s["pools"], s["pool_of"], s["allotment"], compiled=True)
    got = _empty_choices(int(s["pool_of"].size))
    stops: list[int] = []

    def on_miss(picker: Picker, k: int, q: int) -> None:
        stops.append(k)
        got.n_full[k] = picker.ledger.full_count[q]

    out = (got.chosen, got.prev, got.n_full, got.load_after)
    select_compiled(policy, stopping, s["pools"], s["pool_of"], s["allotment"], None, out, on_miss)
    same(got, expected)
    same_ledger(stopping, plain)
    missed = np.flatnonzero((s["pool_of"] >= 0) & (expected.chosen < 0))
    assert stops == missed.tolist()


def test_a_referral_made_from_python_is_seen_by_the_kernel() -> None:
    """Picker.give keeps loads, stamps and full counts consistent: a partner filled from
    Python is never picked again, and the next pick is the next in turn."""
    ledger = Ledger.start(np.array([2, 2]), np.array([0, 1]), [None, None])
    pools = [np.array([0, 1])]
    ledger.register_pools(pools)
    picker = Picker(Policy.ROUND_ROBIN, ledger, pools, None)
    assert picker.give(1) == (-1, 2)  # partner 1 is now full
    choices = _empty_choices(3)
    out = (choices.chosen, choices.prev, choices.n_full, choices.load_after)
    ks, qs = np.arange(3, dtype=np.int64), np.zeros(3, dtype=np.int64)
    assert picker.run(ks, qs, 0, True, out) == 2  # stops at the third: no one has room
    assert choices.chosen.tolist() == [0, 0, -1]
    assert choices.n_full.tolist() == [1, 1, 0]
    assert ledger.load.tolist() == [2, 2] and ledger.counter == 4
    assert ledger.full_count.tolist() == [2]


class _Recorder:
    """Runs ``simulate`` with a given selection function, keeping its Choices."""

    def __init__(self, fn: Any) -> None:
        self.fn = fn
        self.choices: Choices | None = None
        self.ledger: Ledger | None = None

    # ``compiled`` (the caller's choice of loop, in ``**_``) is ignored: ``fn`` is the loop.
    def __call__(self, policy, ledger, pools, pool_of, *rest, **_):  # type: ignore[no-untyped-def]
        self.ledger = ledger
        self.choices = self.fn(policy, ledger, pools, pool_of, *rest)
        return self.choices


def run_both(world: World, policy: Policy, excluded: dict[str, set[str]]) -> list[Any]:
    """``simulate`` with the Python loop, then with the compiled one: (recorder, run).
    The compiled run is told so, so that it also spells its words on the side thread
    (engine.assign) while the selection runs; the Python one spells them after it."""
    runs = []
    for fn, compiled in ((select_python, False), (partial(select, compiled=True), True)):
        recorder = _Recorder(fn)
        with mock.patch.object(engine.assign, "select", recorder):
            sim = engine.assign.simulate(
                world.partners,
                world.customers,
                world.rules,
                policy,
                excluded=excluded,
                today=world.today,
                compiled=compiled,
            )
        runs.append((recorder, sim))
    return runs


def same_runs(runs: list[Any]) -> None:
    (ref, ref_sim), (jit, jit_sim) = runs
    assert ref.choices is not None and jit.choices is not None
    same(jit.choices, ref.choices)
    assert jit.ledger is not None and ref.ledger is not None
    same_ledger(jit.ledger, ref.ledger)
    assert jit_sim.assignments.equals(ref_sim.assignments)
    assert jit_sim.partners.equals(ref_sim.partners)


def declines(world: World, data: st.DataObject) -> dict[str, set[str]]:
    """Some customers with partners that declined them."""
    ids = [r["partner_id"] for r in world.partner_rows if r["partner_id"]]
    tenants = [r["tenant_id"] for r in world.customer_rows if r["tenant_id"]]
    declining = st.sets(st.sampled_from(tenants), max_size=5) if tenants else st.just(set())
    return {
        t: data.draw(st.sets(st.sampled_from(ids), max_size=3)) if ids else set()
        for t in data.draw(declining)
    }


@pytest.mark.parametrize("policy", POLICIES)
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(world=worlds(intake=True), data=st.data())
def test_compiled_and_python_runs_agree_on_random_worlds(
    policy: Policy, world: World, data: st.DataObject
) -> None:
    """Quotas, pauses and declines included: the same Choices and the same result."""
    same_runs(run_both(world, policy, declines(world, data)))


@pytest.mark.parametrize("policy", POLICIES)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(world=split_worlds(), data=st.data())
def test_compiled_and_python_runs_agree_on_random_split_worlds(
    policy: Policy, world: World, data: st.DataObject
) -> None:
    """With 1 to 3 partners per customer, CSS workloads, sizes and declines: the kernels
    stop at each miss for the split, which gives its parts through Picker.give. The same
    Choices, the same parts and the same result file as the Python loop."""
    runs = run_both(world, policy, declines(world, data))
    same_runs(runs)
    (_, ref_sim), (_, jit_sim) = runs
    if ref_sim.parts is None:
        assert jit_sim.parts is None
    else:
        assert jit_sim.parts is not None and jit_sim.parts.equals(ref_sim.parts)
    assert jit_sim.output().equals(ref_sim.output())


def test_small_runs_stay_in_python_and_large_ones_compile(monkeypatch: pytest.MonkeyPatch) -> None:
    """Loading numba costs more than the Python loop spends on a few thousand picks."""
    import engine.policies as policies

    calls: list[str] = []
    monkeypatch.setattr(policies, "select_python", lambda *a, **k: calls.append("python"))
    monkeypatch.setattr("engine.jit.select_compiled", lambda *a, **k: calls.append("jit"))
    ledger = Ledger.start(np.array([10, 10**6]), np.array([0, 0]), [None, None])
    pools = [np.array([0]), np.array([1])]
    ledger.register_pools(pools)
    few_seats = np.zeros(policies.COMPILED_FROM, dtype=np.int32)  # pool 0: 10 seats
    many = np.ones(policies.COMPILED_FROM, dtype=np.int32)  # pool 1: a million seats
    select(Policy.ROUND_ROBIN, ledger, pools, few_seats)
    select(Policy.ROUND_ROBIN, ledger, pools, many[:100])
    select(Policy.ROUND_ROBIN, ledger, pools, many)
    select(Policy.ROUND_ROBIN, ledger, pools, many[:100], compiled=True)
    # Fewer free seats in all than COMPILED_FROM (a capacity-bound world): decided at once.
    bound = Ledger.start(np.array([10, 20]), np.array([0, 5]), [None, None])
    bound.register_pools(pools)
    select(Policy.ROUND_ROBIN, bound, pools, many)
    assert calls == ["python", "python", "jit", "jit", "python"]


def test_the_words_are_spelled_beside_the_compiled_selection_only(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The kernels leave the interpreter, so the traces' match words are spelled on a
    thread while they run; beside the Python loop (or a split, which matches as it goes)
    they are spelled after it, on the caller's thread."""
    import threading

    from engine.jit import planned_kernel, turn_kernel, weighted_kernel
    from tests.scenarios import customer, customers_frame, partner, partners_frame

    assert all(k.targetoptions.get("nogil") for k in (turn_kernel, weighted_kernel, planned_kernel))
    where: list[str] = []
    real = engine.assign._Words.of

    def spelled(*args: Any) -> Any:
        where.append(threading.current_thread().name)
        return real(*args)

    monkeypatch.setattr(engine.assign._Words, "of", spelled)
    partners = partners_frame(partner("P1"), partner("P2"))
    customers = customers_frame(customer("T1"), customer("T2"), customer("T3"))
    runs = [
        engine.assign.simulate(partners, customers, load_rules(), compiled=compiled)
        for compiled in (True, False)
    ]
    assert where[0].startswith("frp-words") and where[1] == threading.main_thread().name
    assert runs[0].output().equals(runs[1].output())
