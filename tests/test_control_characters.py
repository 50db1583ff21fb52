"""Control characters in emails and names (issue #15): refused by the import's validation,
and every address or name it accepts builds a mail message that can be sent.

A header holding any character ``str.splitlines`` breaks at (``\\x1c``, ``\\x85``,
``\\u2028``, ...) cannot be built; before this check one such address stopped the outbox
for good.
"""

from __future__ import annotations

import sys
import unicodedata
from datetime import datetime

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.schema import InputError, check_email, validate_customers, validate_partners
from store.notify import referral_messages
from store.outbox import build_message
from tests.test_notify import referred

#: Every code point refused: Unicode category Cc and the line and paragraph separators.
CONTROL = [
    chr(c)
    for c in range(sys.maxunicode + 1)
    if unicodedata.category(chr(c)) == "Cc" or c in (0x2028, 0x2029)
]
#: Any code point a Polars string can hold (surrogates cannot be UTF-8).
ANY = st.characters(exclude_categories=["Cs"])
SENDER = "FastTrack <fasttrack@frp.example>"

CUSTOMER = {
    "tenant_id": "T1",
    "name": "Acme",
    "country": "US",
    "language": "en",
    "seats": "500",
    "workloads": "exchange",
    "gateway": "true",
    "contact_email": "it@acme.example",
}
PARTNER = {
    "partner_id": "P1",
    "name": "Contoso",
    "countries": "US",
    "languages": "en",
    "workloads": "exchange",
    "capacity": "5",
    "active_referrals": "0",
    "referral_ready": "true",
    "psm_name": "Pat",
    "psm_email": "pat@psm.example",
    "contact_email": "referrals@contoso.example",
}


def customer(**cells: str) -> pl.DataFrame:
    return validate_customers(pl.DataFrame([CUSTOMER | cells]))


def partner(**cells: str) -> pl.DataFrame:
    return validate_partners(pl.DataFrame([PARTNER | cells]))


def test_every_separator_splitlines_knows_is_refused() -> None:
    breaks = {ch for c in range(sys.maxunicode + 1) if len(f"a{(ch := chr(c))}b".splitlines()) > 1}
    assert breaks <= set(CONTROL)
    assert {"\x1c", "\x1d", "\x1e", "\u2028", "\u2029", "\x85"} <= breaks


@pytest.mark.parametrize("ch", ["\x1c", "\x1d", "\x1e", "\x00", "\t", "\n", "\u2028", "\x85"])
def test_a_control_character_is_a_row_error_naming_the_column(ch: str) -> None:
    with pytest.raises(InputError) as caught:
        customer(contact_email=f"it{ch}x@acme.example")
    (problem,) = caught.value.problems
    assert (problem.row, problem.column) == (1, "contact_email")
    assert "no control characters" in caught.value.one_line()
    with pytest.raises(InputError, match="row 1, column name.*no control characters"):
        customer(name=f"Acme{ch}Corp")
    for column in ("name", "psm_name", "psm_email", "contact_email"):
        value = f"x{ch}y@p.example" if column.endswith("email") else f"x{ch}y"
        with pytest.raises(InputError, match=f"column {column}.*no control characters"):
            partner(**{column: value})


@settings(max_examples=300, deadline=None)
@given(
    head=st.text(ANY, min_size=1, max_size=6),
    ch=st.sampled_from(CONTROL),
    tail=st.text(ANY, min_size=1, max_size=6),
)
def test_any_text_with_a_control_character_inside_is_refused(head: str, ch: str, tail: str) -> None:
    # Inside: leading and trailing whitespace is trimmed on reading, as it always was.
    name, address = f"x{head}{ch}{tail}x", f"x{head}{ch}{tail}x@acme.example"
    for check in (lambda: customer(name=name), lambda: customer(contact_email=address)):
        with pytest.raises(InputError, match="no control characters"):
            check()
    with pytest.raises(InputError):
        check_email(address)


@settings(max_examples=300, deadline=None)
@given(name=st.text(ANY, min_size=1, max_size=12), local=st.text(ANY, min_size=1, max_size=12))
def test_every_accepted_name_and_address_builds_a_message(name: str, local: str) -> None:
    try:
        row = customer(name=name, contact_email=f"{local}@acme.example").row(0, named=True)
    except InputError:
        return
    assert not set(row["name"] + row["contact_email"]) & set(CONTROL)
    assert check_email(row["contact_email"]) == row["contact_email"]
    frame = referred(customer_name=row["name"], customer_email=row["contact_email"])
    for msg in referral_messages(frame).iter_rows(named=True):
        built = build_message({**msg, "created_at": datetime(2026, 1, 1)}, SENDER)
        assert built.as_bytes()


#: Characters that make the difference between a good and a bad name or address: every
#: kind of whitespace (Unicode White_Space, some of it also control), control characters,
#: the address's separators, and plain letters.
EDGES = st.sampled_from(
    [" ", "\t", "\n", "\r", "\x0b", "\x0c", "\x85", "\xa0", "\u1680", "\u2000", "\u2028"]
    + ["\u2029", "\u202f", "\u3000", "\x00", "\x1c", "\x7f", "\x9f", "@", ".", ";", ","]
    + ["a", "b", "é", "😀"]
)


def _three_step_masks(frame: pl.DataFrame) -> pl.DataFrame:
    """The checks as they were written before they became one regex each: trim, then
    test for emptiness, the address's shape and control characters. The reference."""
    trimmed = pl.col("v").str.strip_chars()
    empty = trimmed.is_null() | (trimmed == "")
    control = trimmed.str.contains(r"[\p{Cc}\x{2028}\x{2029}]")
    shape = trimmed.str.contains(r"^[^@\s;,]+@[^@\s;,]+\.[^@\s;,]+$")
    return frame.select(
        (empty | control).fill_null(True).alias("name"),
        (empty | ~shape | control).fill_null(True).alias("email"),
    )


#: Mostly nearly an address: padding, local part, "@", domain, ".", end, padding, each
#: drawn from EDGES, so that most values are one character away from good or bad.
PIECE = st.text(EDGES, max_size=3)
LETTERS = st.text(st.sampled_from("ab"), min_size=1, max_size=2)
NEARLY = st.builds(
    lambda pad, local, dom, tld, end, junk: f"{pad}{local}{junk}@{dom}.{tld}{end}",
    PIECE,
    LETTERS,
    LETTERS,
    LETTERS,
    PIECE,
    st.one_of(st.just(""), PIECE),
)
VALUE = st.one_of(st.none(), st.text(EDGES, max_size=10), NEARLY)


@settings(max_examples=500, deadline=None)
@given(values=st.lists(VALUE, max_size=40))
def test_the_one_pass_checks_refuse_exactly_what_the_three_steps_did(
    values: list[str | None],
) -> None:
    from engine.schema import _EMAIL, _NAME

    frame = pl.DataFrame({"v": values}, schema={"v": pl.String})
    one_pass = frame.select(
        (~pl.col("v").str.contains(_NAME)).fill_null(True).alias("name"),
        (~pl.col("v").str.contains(_EMAIL)).fill_null(True).alias("email"),
    )
    assert one_pass.equals(_three_step_masks(frame)), values
