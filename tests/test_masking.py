"""Viewers never see a customer's name or contact email, by construction (issue #15).

What a viewer sees is rendered from data whose personal fields were masked before any
template, subject, table or download saw them, so no spelling of the name (HTML-escaped,
refolded, with its whitespace changed) can reach the page. The worlds here are written
straight into the store (``import_customers`` takes frames without the file checks), so
names that a file import would refuse (line breaks, tabs) are covered too.

Texts are compared normalised (HTML entities decoded, case folded, whitespace collapsed),
so a change of spelling on the way cannot hide a leak.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st

from engine.rules import load_rules
from store import clock, lifecycle
from store.commits import commit
from store.db import connect
from store.imports import import_customers, import_partners
from store.referrals import message, outbox, previews
from tests.app_helpers import VIEWER, open_page, page_text, run_simulation
from tests.scenarios import customer, customers_frame, partner, partners_frame

START = "2026-12-01T09:00:00"
#: Six days on: the reminders (after 5 days) are due, nothing has expired yet (7).
LATER = "2026-12-07T09:00:00"
WINDOW = load_rules().accept_within_days
PAGES = ("pages/capacity.py", "pages/referrals.py", "pages/fairness.py", "pages/data.py")


def norm(text: str) -> str:
    """Spelling-proof: entities decoded, case folded, every whitespace run one space."""
    return " ".join(html.unescape(text).casefold().split())


def build_world(path: Path, names: list[str], emails: list[str]) -> None:
    """Two German partners; per name a customer placed with a partner (every third a
    Gateway one, with an FTOP task), one sent to CSS (no French partner) and one left
    waiting in the backlog; reminders queued six days later."""
    con = connect(path)
    try:
        with clock.frozen(START):
            import_partners(con, partners_frame(partner("P1"), partner("P2")))
            placed = [
                customer(f"T{i:03d}", name=n, contact_email=e, gateway=i % 3 == 0)
                for i, (n, e) in enumerate(zip(names, emails, strict=True))
            ]
            css = [
                customer(f"C{i:03d}", name=n, contact_email=e, country="FR", language="fr")
                for i, (n, e) in enumerate(zip(names, emails, strict=True))
            ]
            import_customers(con, customers_frame(*placed, *css))
            commit(con, load_rules(), "round-robin", actor="test")
            backlog = [
                customer(f"B{i:03d}", name=n, contact_email=e)
                for i, (n, e) in enumerate(zip(names, emails, strict=True))
            ]
            import_customers(con, customers_frame(*backlog))
        with clock.frozen(LATER):
            lifecycle.expire(con, load_rules(), actor="test")
    finally:
        con.close()


def viewer_texts(path: Path) -> Iterator[tuple[str, str]]:
    """(where, text) of everything a viewer is shown: every page (the Simulate page after
    a run of the backlog), and every outbox message as the viewer's preview renders it."""
    import streamlit

    for page in PAGES:
        streamlit.cache_data.clear()
        yield page, page_text(open_page(page, VIEWER))
    streamlit.cache_data.clear()
    at = run_simulation(open_page("pages/simulate.py", VIEWER), ["round-robin"])
    yield "pages/simulate.py", page_text(at)
    yield from previews_seen(path)


def previews_seen(path: Path) -> Iterator[tuple[str, str]]:
    """The outbox table, every message in it as a viewer's preview renders it, and the
    first few as the page's message read gives them."""
    con = connect(path)
    try:
        shown = outbox(con, limit=10_000, window=WINDOW)
        yield "outbox table", shown.write_csv()
        every = previews(con, shown["message_id"].to_list(), WINDOW)
        assert every.height == shown.height
        yield "previews", every.write_csv()
        for mid in shown["message_id"].head(5):
            msg = message(con, mid, window=WINDOW)
            assert msg is not None
            parts = (msg["to_email"], msg["subject"], msg["body"], msg["body_html"] or "")
            yield f"message {mid}", "\n".join(parts)
    finally:
        con.close()


@pytest.fixture
def world_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fresh_caches: None) -> Path:
    path = tmp_path / "frp.duckdb"
    monkeypatch.setenv("FRP_DB", str(path))
    monkeypatch.setenv(clock.ENV, LATER)
    return path


# --- The defects of issue #15, one by one --------------------------------------------------

SPELLINGS = {
    "apostrophe": "O'Sullivan Brewing Ltd",
    "quotes": 'The "Best" Brewing Co',
    "double space": "Double  Space Brewing GmbH",
    "line break": "Line\nBreak Brewing AB",
    "tab": "Tab\tSeparated Brewing Oy",
    "folded": "Long " * 30 + "Brewing Ltd",
}


def test_a_viewer_sees_no_spelling_of_a_name_on_the_referrals_page(world_env: Path) -> None:
    emails = [f"jane.o'doe.{i}@osullivan.example" for i in range(len(SPELLINGS))]
    build_world(world_env, list(SPELLINGS.values()), emails)
    text = norm(page_text(open_page("pages/referrals.py", VIEWER)))
    for (spelling, name), email in zip(SPELLINGS.items(), emails, strict=True):
        assert norm(name) not in text, spelling
        assert norm(email) not in text, spelling
    assert "***" in text  # masked, not left out


def test_a_viewer_sees_no_spelling_of_a_name_in_any_outbox_message(world_env: Path) -> None:
    emails = [f"jane.{i}@osullivan.example" for i in range(len(SPELLINGS))]
    build_world(world_env, list(SPELLINGS.values()), emails)
    seen = dict(previews_seen(world_env))
    assert len(seen) == 2 + 5  # the table, every preview, five messages
    for where, text in seen.items():
        for (spelling, name), email in zip(SPELLINGS.items(), emails, strict=True):
            assert norm(name) not in norm(text), (where, spelling)
            assert norm(email) not in norm(text), (where, spelling)


# --- The property: any name, every page, every preview ------------------------------------

#: Names chosen to break text search: escaped characters, whitespace that changes, other
#: scripts, template syntax, and words every page holds anyway ("Re", "FastTrack").
AWKWARD = [
    "O'Sullivan Brewing Ltd",
    'The "Best" Co',
    "Re",
    "FastTrack",
    "Referral",
    "Müller  Maschinenbau\nAG",
    "東京商事株式会社",
    "Ωmega\tΣystems",
    "<b>{{ customer.name }}</b> & {% raw %}",
    "Ακρόπολη  Α.Ε.",
    "شركة الخليج",
    "a" * 300,
]
NAME_CHARS = st.characters(
    categories=("L", "M", "N", "P", "S", "Zs"),
    include_characters="\n\t'\"<>&{}%#",
    exclude_characters="*",
)
NAMES = st.one_of(st.sampled_from(AWKWARD), st.text(NAME_CHARS, min_size=2, max_size=60)).filter(
    lambda n: len(norm(n)) >= 2
)
LOCAL = st.text(
    st.sampled_from("abcdefghijklmnopqrstuvwxyz0123456789.'_+-"), min_size=2, max_size=20
)


def count(needle: str, text: str) -> int:
    return norm(text).count(norm(needle))


#: A masked value keeps its first character; any first character counts as the same.
_MASK = re.compile(r"(?s).\*\*\*")


def unmasked(text: str) -> str:
    return _MASK.sub("\x00***", html.unescape(text))


@pytest.fixture(scope="module")
def baseline(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """What a viewer sees of the same world with plain names: the words every page holds
    whatever the customers are called."""
    path = tmp_path_factory.mktemp("baseline") / "frp.duckdb"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FRP_DB", str(path))
        mp.setenv(clock.ENV, LATER)
        names = [f"Zz plain {i}" for i in range(SIZE)]
        build_world(path, names, [f"zz{i}@plain.example" for i in range(SIZE)])
        return {where: unmasked(text) for where, text in viewer_texts(path)}


SIZE = 24  # customers per world (three rows each): a few dozen names on every page


@settings(
    max_examples=1,  # plus the example below; each builds one world of SIZE customers
    deadline=None,
    phases=(Phase.explicit, Phase.reuse, Phase.generate),  # a failure names its value
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@example(
    names=(AWKWARD * 2)[:SIZE],
    locals_=[f"o'sullivan.{i}" for i in range(SIZE)],
)
@given(
    names=st.lists(NAMES, min_size=SIZE, max_size=SIZE),
    locals_=st.lists(LOCAL, min_size=SIZE, max_size=SIZE),
)
def test_no_name_nor_email_reaches_a_viewer(
    names: list[str], locals_: list[str], baseline: dict[str, str], tmp_path_factory
) -> None:
    path = tmp_path_factory.mktemp("world") / "frp.duckdb"
    emails = [f"{local}{i}@plain.example" for i, local in enumerate(locals_)]
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FRP_DB", str(path))
        mp.setenv(clock.ENV, LATER)
        build_world(path, names, emails)
        seen = dict(viewer_texts(path))
    assert seen.keys() == baseline.keys()
    for where, text in seen.items():
        shown, plain = unmasked(text), baseline[where]
        for value in (*names, *emails):
            found, expected = count(value, shown), count(value, plain)
            assert found == expected, f"{where}: {value!r} shown {found} times, not {expected}"


def test_an_uploads_bad_name_or_email_is_hidden_from_a_viewer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from ui import auth, privacy

    problems = pl.DataFrame(
        {
            "line": [2, 3, 4],
            "column": ["name", "contact_email", "seats"],
            "value": ["O'Sullivan\nBrewing", "jane@", "many"],
            "expected": ["no line breaks", "an email", "a whole number"],
        }
    )
    monkeypatch.setattr(auth, "current_user", lambda: auth.User("V", "v@x.example", "viewer"))
    assert privacy.problems(problems)["value"].to_list() == [privacy.HIDDEN] * 2 + ["many"]
    monkeypatch.setattr(auth, "current_user", lambda: auth.LOCAL_USER)
    assert privacy.problems(problems).equals(problems)
