"""The Simulate page's work, split by what each part owns (the page reads widgets and draws).

This package's own module holds what every part shares: the session keys (the Fairness
page reads :data:`LATEST_KEY`), :class:`SimulationRun` and :func:`run_policies`, which
simulates every chosen policy on inputs read *beforehand* in one short session
(:func:`ui.simulation.cohort.read_inputs`): the engine runs for seconds on a big cohort,
and the database file must stay free for `frp` and other sessions meanwhile.

- :mod:`ui.simulation.cohort`: choosing the cohort (backlog, upload, synthetic) and
  reading the stored inputs;
- :mod:`ui.simulation.comparison`: the per-run comparison (policy x split setting) and
  the frames of its CSS and load charts (drawn by :mod:`ui.charts`);
- :mod:`ui.simulation.why`: the per-customer table and one customer's decision, step
  by step;
- :mod:`ui.simulation.results`: drawing a run (metrics, charts, emails, downloads);
- :mod:`ui.simulation.commit`: committing one policy's result after confirmation.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from engine.fairness import OUTCOME_COLUMNS, report
from engine.reasons import Policy, Reason
from engine.rules import Rules
from engine.simulation import Simulation
from store.commits import Prepared
from store.files import table_bytes

#: Session keys. The Fairness page reads LATEST_KEY (policy name -> Simulation).
LATEST_KEY = "latest_simulations"
RUN_KEY = "simulate_run"
#: The run before the latest one: the "before" of the before/after table.
BASELINE_KEY = "simulate_baseline"
COMMIT_KEY = "simulate_commit"

POLICIES = [p.value for p in Policy]
#: Split settings a run can be compared under (``max_partners_per_customer``), in words.
SPLITS: dict[int, str] = {1: "split off", 2: "split 2", 3: "split 3"}
#: Between a policy and its split setting in a run's name ("round-robin · split 2").
_SPLIT_SEP = " · "
#: From this many customers a what-if runs the compiled selection loop (engine.jit) even
#: below the command line's threshold (engine.policies.COMPILED_FROM): a dashboard's
#: server loads numba once and keeps it, where a one-off ``frp`` process would pay the
#: load (about 0.4 s) on every run. 100k customers with room: 0.9 s of Python loop for
#: four policies, a few hundredths compiled.
COMPILED_FROM_SERVER = 20_000

PolicyProgress = Callable[[float, str], None]


@dataclass(frozen=True)
class SimulationRun:
    """One press of "Run simulation": the cohort, the rules used and a result per policy
    and split setting. ``simulations`` is keyed by :func:`run_name`; each simulation holds
    its own policy and rules (``Simulation.policy``, ``Simulation.rules``)."""

    cohort: pl.DataFrame  # as chosen, before customers with an open referral were left out
    source: str
    committable: bool
    rules: Rules
    overrides: Mapping[str, Any]
    prepared: Prepared  # stored partners, the cohort simulated, who was skipped
    simulations: dict[str, Simulation] = field(default_factory=dict)
    #: Per run, how evenly it loads the partners (:func:`balance`).
    balance: dict[str, dict[str, float]] = field(default_factory=dict)
    #: The inputs it was computed from (``ui.simulation.freshness.inputs_key``).
    key: Mapping[str, str] = field(default_factory=dict)


def run_name(policy: str, split: int, splits: Sequence[int]) -> str:
    """The name of one run of a press: its policy, and its split setting when more than one
    was chosen ("round-robin · split 2")."""
    return policy if len(splits) < 2 else f"{policy}{_SPLIT_SEP}{SPLITS[split]}"


def policy_words(name: str) -> str:
    """A run's name in words: the policy's, then its split setting when the name has one."""
    policy, _, split = name.partition(_SPLIT_SEP)
    words = Policy(policy).words
    return f"{words}{_SPLIT_SEP}{split}" if split else words


def reason_words(reason: str) -> str:
    return Reason(reason).words


def run_policies(
    prepared: Prepared,
    rules: Rules,
    policies: list[str],
    cohort: pl.DataFrame,
    *,
    source: str,
    committable: bool,
    overrides: Mapping[str, Any] | None = None,
    progress: PolicyProgress | None = None,
    key: Mapping[str, str] | None = None,
    splits: Sequence[int] = (),
) -> SimulationRun:
    """Simulate the ``prepared`` cohort under each policy and each split setting (``splits``:
    values of ``max_partners_per_customer``; none: the rules' own), with no database
    connection: ``Prepared.simulate``, the engine call every run on the store makes."""
    if not policies:
        raise ValueError("at least one policy")
    limits = list(dict.fromkeys(splits)) or [rules.max_partners_per_customer]
    runs = [(policy, limit) for limit in limits for policy in policies]
    sims: dict[str, Simulation] = {}
    total = len(runs)
    compiled = True if cohort.height >= COMPILED_FROM_SERVER else None
    for i, (policy, limit) in enumerate(runs):
        name = run_name(policy, limit, limits)

        def report(done: int, n: int, i: int = i, name: str = name) -> None:
            if progress is not None:
                share = (i + (done / n if n else 1.0)) / total
                progress(min(share, 1.0), f"{name}: {done:,} of {n:,} customers")

        ruled = rules.replace(max_partners_per_customer=limit)
        sim = prepared.simulate(ruled, policy, report, compiled=compiled)
        sims[name] = sim
    return SimulationRun(
        cohort=cohort,
        source=source,
        committable=committable,
        rules=rules,
        overrides=dict(overrides or {}),
        prepared=prepared,
        simulations=sims,
        balance={name: balance(sim) for name, sim in sims.items()},
        key=dict(key or {}),
    )


def balance(sim: Simulation) -> dict[str, float]:
    """Jain's index, partners at capacity and mean utilisation after a run, as the fairness
    report counts them. They read only the partners' load: the report is made without the
    customers' outcomes, whose pools and CSS breakdowns cost about a tenth of a second per
    100,000 customers and which the Fairness page works out when it is opened."""
    rep = report(pl.DataFrame(schema=OUTCOME_COLUMNS), sim.partners)
    return {
        "jain": rep.jain,
        "at_capacity": rep.at_capacity,
        "mean_utilisation": rep.mean_utilisation,
    }


def result_bytes(frame: pl.DataFrame, suffix: str) -> bytes:
    """A result as the CLI would write it (``store.files.write_table``), as bytes."""
    return table_bytes(frame, suffix)


def describe_overrides(rules: Rules, defaults: Rules) -> str:
    """The rule knobs that differ from the active rules, in words ('' when none)."""
    parts = []
    if rules.min_seats != defaults.min_seats:
        parts.append(f"minimum seats {rules.min_seats:,} (instead of {defaults.min_seats:,})")
    if rules.capacity_scale != defaults.capacity_scale:
        parts.append(f"capacity × {rules.capacity_scale:g}")
    if rules.disabled_partners != defaults.disabled_partners:
        parts.append(f"{len(rules.disabled_partners)} partner(s) switched off")
    return "; ".join(parts)
