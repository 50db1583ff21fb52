"""Whether the results on the Simulate page still answer the question on the page.

A run is computed from the rules (the Data page's, plus this page's overrides), a
cohort, a list of policies and a list of split settings. Each of those can change after
the run: a manager raises the minimum seats on the Data page, picks another cohort, or a
commit empties the backlog. Results kept in the session would then show numbers that no
longer hold, and committing them would write something else than what was shown. So a
run carries the key of its inputs (:func:`inputs_key`); the page compares it with the
key of the inputs as they are now, marks the results out of date and disables Commit
until the simulation is run again.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence

import streamlit as st

from engine.rules import Rules, to_toml
from store import clock

#: The parts of the key, in words, for the "out of date" note.
PARTS = {
    "store": "the stored partners, customers or referrals",
    "rules": "the rules (Data page)",
    "overrides": "the rule overrides",
    "cohort": "the cohort",
    "policies": "the policies",
    "splits": "the split settings",
}

InputsKey = Mapping[str, str]


def digest(data: bytes) -> str:
    """A short fingerprint of an uploaded file's bytes (same file, same fingerprint)."""
    return hashlib.sha256(data).hexdigest()[:16]


def inputs_key(
    active: Rules,
    overrides: Sequence[object],
    cohort: str,
    policies: Sequence[str],
    splits: Sequence[int] = (),
    stored: str = "",
) -> dict[str, str]:
    """The inputs a run is computed from, one string per part of :data:`PARTS`.

    ``stored`` is the store's content as ``store.state.fingerprint`` gives it (partners,
    their load and turns, the backlog: any write changes it, whoever made it), with the
    clock's date (a pause ends, a month's quota starts again); ``cohort`` identifies the
    cohort's source and, for a file or a synthetic cohort, its content.
    """
    return {
        "store": f"{stored}|{clock.today().isoformat()}",
        "rules": digest(to_toml(active).encode()),
        "overrides": repr(tuple(overrides)),
        "cohort": cohort,
        "policies": ",".join(policies),
        "splits": ",".join(str(s) for s in splits),
    }


def changed(then: InputsKey, now: InputsKey) -> list[str]:
    """The parts that differ, in words ([] when the results still hold)."""
    return [words for part, words in PARTS.items() if then.get(part) != now.get(part)]


_KEPT = "_kept_"


def keep(key: str, default: object = None) -> None:
    """Give the widget ``key`` back the value it had when the manager left the page.

    Streamlit forgets the value of a widget that was not drawn in a run (another page was
    shown), so the cohort would silently go back to the backlog while the results kept
    saying "synthetic cohort". The value is kept under a key no widget owns, and put back
    before the widget is drawn again.
    """
    kept = _KEPT + key
    if key in st.session_state:
        st.session_state[kept] = st.session_state[key]
    elif kept in st.session_state:
        st.session_state[key] = st.session_state[kept]
    elif default is not None:  # the widget takes its first value from here, not an argument
        st.session_state[key] = default


#: The override widgets and the active rule each starts from.
OVERRIDES = ("ov_min_seats", "ov_scale", "ov_off")
_SEEDED = "_overrides_from"


def follow_rules(active: Rules, partners: list[str]) -> None:
    """Start the override widgets from the active rules, and again whenever those change
    (the Data page): an override left at the old value would silently undo the change.
    Otherwise keep what the manager set, across visits to other pages."""
    seed = digest(to_toml(active).encode())
    if st.session_state.get(_SEEDED) != seed:
        st.session_state[_SEEDED] = seed
        values = (
            active.min_seats,
            float(active.capacity_scale),
            sorted(set(active.disabled_partners) & set(partners)),
        )
        for key, value in zip(OVERRIDES, values, strict=True):
            st.session_state[key] = st.session_state[_KEPT + key] = value
    for key in OVERRIDES:
        keep(key)
