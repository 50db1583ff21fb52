"""The dashboard's downloads: one table in the command line's file formats, side by side.

Each file is what ``frp`` writes for its extension (``store.files.table_bytes``: CSV and
workbooks with formulas neutralised), made only when the button is pressed, and a
download holding customers' data goes into the audit log as an export
(``ui.auth.export_callback``), whichever format it is.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Sequence

import streamlit as st

from store.files import table_bytes
from store.referrals import ReferralFilter, referral_rows
from ui import auth, db, privacy

#: Each format a download comes in: its words on the button and its MIME type.
FORMATS = {
    ".csv": ("CSV", "text/csv"),
    ".parquet": ("Parquet", "application/vnd.apache.parquet"),
    ".xlsx": ("Excel", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"),
}


def buttons(
    make: Callable[[str], bytes],
    name: str,
    *,
    key: str,
    details: str = "",
    suffixes: Sequence[str] = tuple(FORMATS),
    label: str = "Download {format}",
    audited: bool = True,
) -> None:
    """One button per format: ``make(suffix)`` gives the file ``name + suffix``; each
    button's key is ``key`` and the format (``download_csv``). ``audited``: the file holds
    personal data (a template does not)."""
    for suffix in suffixes:
        words, mime = FORMATS[suffix]
        st.download_button(
            label.format(format=words),
            lambda suffix=suffix: make(suffix),
            file_name=f"{name}{suffix}",
            mime=mime,
            key=f"{key}_{suffix[1:]}",
            on_click=auth.export_callback(f"{name}{suffix}", details) if audited else "rerun",
            icon=":material/download:",
        )


def referrals(where: ReferralFilter, total: int) -> None:
    """Every referral matching the Referrals page's filters (the table lists the first
    ``ROW_CAP``), the customers masked for a viewer as in the table."""
    personal = privacy.personal()

    def make(suffix: str) -> bytes:
        with db.session() as con:
            return table_bytes(referral_rows(con, where, total, personal=personal), suffix)

    unset = dataclasses.asdict(ReferralFilter())
    chosen = {k: v for k, v in dataclasses.asdict(where).items() if v != unset[k]}
    with st.container(horizontal=True):
        buttons(
            make,
            "referrals",
            key="referrals_download",
            details=json.dumps({"referrals": total, **chosen}, default=str),
            label=f"Download {total:,} as {{format}}",
        )
