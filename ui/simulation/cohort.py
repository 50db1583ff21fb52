"""Choosing the cohort to simulate (the FTCQ backlog, an uploaded file or a synthetic one)
and reading what the simulation needs from the store in one short session.

The inputs are read once, then the connection is closed before the engine runs (seconds
on a big cohort, times the policies chosen): while a connection is open the file is
locked, and `frp` or another dashboard session could not write meanwhile.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import polars as pl
import streamlit as st

from engine.cohorts import CohortMix, synthetic_cohort
from engine.columns import LIST_SEPARATOR
from engine.schema import InputError
from store import state
from store.commits import Prepared, prepare
from ui import db, downloads, privacy
from ui.labels import plural
from ui.simulation.freshness import digest, keep
from ui.uploads import read_upload, template_csv, template_xlsx, valid_customers

Source = Literal["backlog", "upload", "synthetic"]
BACKLOG_LABEL = "FTCQ backlog"
SOURCE_KEY = "cohort_source"


@dataclass(frozen=True)
class Synthetic:
    """The synthetic cohort's knobs, as the form gives them."""

    size: int
    seed: int
    mix: CohortMix


@dataclass(frozen=True)
class Choice:
    """The cohort picked above the form: where it comes from, and an uploaded file's rows."""

    source: Source
    uploaded: pl.DataFrame | None = None
    filename: str = ""
    fingerprint: str = ""  # of the uploaded file's bytes: another file, another cohort
    left_out: tuple[int, ...] = ()  # rows of a bad file left out of a what-if

    @property
    def committable(self) -> bool:
        """Invented customers cannot be committed: they are not in the store; nor can the
        valid part of a bad file (an import takes a file whole or not at all)."""
        return self.source != "synthetic" and not self.left_out


def choose(backlog: int) -> Choice:
    """The cohort radio and, for an upload, the file (validated as `frp import` would)."""
    sources: dict[Source, str] = {
        "backlog": f"FTCQ backlog ({backlog:,} waiting)",
        "upload": "Upload a customers file",
        "synthetic": "Synthetic cohort",
    }
    keep(SOURCE_KEY)  # Streamlit drops a widget's value while another page is shown
    source: Source = st.radio(
        "Cohort", list(sources), format_func=sources.get, horizontal=True, key=SOURCE_KEY
    )
    if source == "backlog" and backlog == 0:
        st.info(
            "The FTCQ backlog is empty: nobody is waiting for assignment. Import customers on "
            "the **Data** page, upload a cohort file or try a synthetic cohort."
        )
    if source != "upload":
        return Choice(source)
    expected_columns()
    file = st.file_uploader(
        "Customers file (.csv, .parquet or .xlsx), one customer per row, in cohort order",
        type=["csv", "parquet", "xlsx"],
        key="cohort_file",
    )
    if file is None:
        st.info("Upload a customers file to simulate it instead of the backlog.")
        return Choice(source)
    data = file.getvalue()
    fingerprint = digest(data)
    try:
        uploaded = read_upload(data, file.name, "customers")
    except InputError as exc:
        st.error(f"{exc.one_line()}. Fix these rows and upload the file again.")
        st.dataframe(privacy.problems(exc.to_frame()), hide_index=True)
        return _valid_part(Choice(source, filename=file.name, fingerprint=fingerprint), data)
    st.success(f"{file.name}: {plural(uploaded.height, 'customer')} ready to simulate.")
    return Choice(source, uploaded, file.name, fingerprint)


#: The template to fill in, in each format offered.
TEMPLATES = {".csv": template_csv, ".xlsx": template_xlsx}

#: The columns of a customers file, as a person fills them in.
COLUMNS = {
    "tenant_id": "the customer's tenant id (unique)",
    "name": "company name",
    "country": "ISO country code, e.g. GB",
    "language": "language code, e.g. en",
    "seats": "licensed seats, a whole number",
    "workloads": f"workloads asked for, separated by “{LIST_SEPARATOR}”",
    "gateway": "true or false: a Gateway customer",
    "contact_email": "the customer's contact address",
    "referral_consent": "true, false or empty (the rules' default): may partners be told?",
}


def expected_columns() -> None:
    """What a customers file holds (the same as `frp import customers` takes), and a
    template to fill in."""
    with st.expander("Expected columns and a template", expanded=True):
        st.markdown("\n".join(f"- `{c}`: {w}" for c, w in COLUMNS.items()))
        with st.container(horizontal=True):
            downloads.buttons(
                lambda suffix: TEMPLATES[suffix](),
                "customers-template",
                key="cohort_template",
                suffixes=tuple(TEMPLATES),
                label="Download template ({format})",
                audited=False,  # an invented example row, nobody's data
            )


def _valid_part(bad: Choice, data: bytes) -> Choice:
    """A what-if may go on with the rows that are fine, the others listed above and left
    out; it can then not be committed."""
    part = valid_customers(data, bad.filename)
    if part is None:
        return bad
    valid, dropped = part
    use = st.checkbox(
        f"Simulate the {plural(valid.height, 'valid row')} anyway, leaving out the "
        f"{plural(len(dropped), 'row')} listed above (a what-if only: it cannot be committed)",
        key="cohort_partial",
    )
    if not use:
        return bad
    return Choice("upload", valid, bad.filename, bad.fingerprint + ":valid", tuple(dropped))


def synthetic_inputs() -> Synthetic:
    """The synthetic cohort's widgets (inside the page's form)."""
    st.markdown(
        "**Synthetic cohort** — invented customers from the countries and languages "
        "the partners serve (same seed, same cohort)"
    )
    c1, c2, c3, c4, c5, c6 = st.columns(6)
    defaults = {"syn_size": 500, "syn_seed": 1, "syn_small": 10, "syn_gateway": 20}
    for key, value in {**defaults, "syn_consent": 5, "syn_other": 5}.items():
        keep(key, value)
    size = c1.number_input("Customers", 1, 100_000, step=100, key="syn_size")
    seed = c2.number_input("Seed", 0, 1_000_000, key="syn_seed")
    small = c3.slider("Small tenants %", 0, 100, key="syn_small")
    gateway = c4.slider("Gateway %", 0, 100, key="syn_gateway")
    no_consent = c5.slider("No consent %", 0, 100, key="syn_consent")
    other = c6.slider("No eligible workload %", 0, 100, key="syn_other")
    mix = CohortMix(small / 100, gateway / 100, no_consent / 100, other / 100)
    return Synthetic(int(size), int(seed), mix)


def read_inputs(
    choice: Choice, synthetic: Synthetic | None = None
) -> tuple[pl.DataFrame, Prepared] | None:
    """The cohort as chosen and the stored inputs to simulate it (partners, the cohort
    minus customers with an open referral), read in one short session; None when there
    is no cohort (no file uploaded yet). A viewer's cohort has its customers' personal
    fields masked from here on: every table, "why", email preview and download of the
    run is made from it."""
    if choice.source == "upload" and choice.uploaded is None:
        return None
    with db.session() as con:  # closed before the engine runs
        if choice.source == "backlog":
            cohort = state.backlog(con)
        elif choice.source == "upload":
            assert choice.uploaded is not None
            cohort = choice.uploaded
        else:
            assert synthetic is not None, "the synthetic cohort's knobs"
            cohort = drawn(synthetic, state.partners(con))
        cohort = privacy.frame(cohort)
        return cohort, prepare(con, cohort, label(choice, synthetic))


@st.cache_data(max_entries=2, show_spinner=False)
def drawn(synthetic: Synthetic, partners: pl.DataFrame) -> pl.DataFrame:
    """A synthetic cohort, drawn once for the same knobs and partners (the same seed gives
    the same cohort): 100,000 customers cost about a quarter of a second of CPU, which a
    second press, or another session trying the same cohort, need not pay again."""
    return synthetic_cohort(synthetic.size, synthetic.seed, synthetic.mix, partners)


def identity(choice: Choice, synthetic: Synthetic | None) -> str:
    """What the cohort's content depends on besides the store, as one string (part of the
    inputs' key; the backlog's content is the store's, keyed apart): the file for an
    upload, the knobs for a synthetic cohort."""
    if choice.source == "upload":
        return f"upload:{choice.filename}:{choice.fingerprint}"
    if choice.source == "synthetic" and synthetic is not None:
        return f"synthetic:{synthetic}"
    return choice.source


def label(choice: Choice, synthetic: Synthetic | None = None) -> str:
    """The cohort in words, as the results and the commit's audit entry name it."""
    if choice.source == "backlog":
        return BACKLOG_LABEL
    if choice.source == "upload" and choice.left_out:
        return f"uploaded file {choice.filename} ({len(choice.left_out):,} bad rows left out)"
    if choice.source == "upload":
        return f"uploaded file {choice.filename}"
    return f"synthetic cohort (seed {synthetic.seed if synthetic else 0})"
