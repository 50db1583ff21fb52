"""The Data page's rules: the team's rules kept in the store (``store.rules``), a what-if
for one session, and the history of versions with their diffs and restore.

A manager's "Save as the team's rules" adds a version every run uses from then on, by
any manager, the command line and the scheduler alike. Anyone may try edited rules for
their own session without saving (``ui.db.RULES_KEY``): the Simulate page's what-ifs use
them, while commits, expiry and the other writes keep to the team's rules. Saving and
restoring check the role on the server at the moment of writing (``ui.auth``).
"""

from __future__ import annotations

import re
from typing import Any

import polars as pl
import streamlit as st

from engine.rules import WHEN_FULL_CHOICES, Rules, RulesError, parse_rules, to_toml
from store import rules as team_rules
from ui import auth, db, labels
from ui.reads import view

RULES_TEXT = "rules_text"  # the text area's key
SAVE_NOTE = "rules_save_note"  # the note kept with a saved version
RESULT = "rules_result"  # (kind, message) left by a rules button for the next run
SAVING = "save the team's rules"
FIELD = "rule_"  # the form's widget keys: FIELD + the rule's key
FORM_FROM = "rules_form_from"  # the text the form's fields were last filled from

#: The rules a manager changes most, by key: the form's labels and the name every error
#: gives the rule (a manager thinks "minimum seats", not "line 2, column 13"). The TOML
#: view keeps everything else (queues, regions, paused partners).
RULE_NAMES: dict[str, str] = {
    "min_seats": "Minimum seats",
    "eligible_workloads": labels.COLUMNS["eligible_workloads"][0],
    "referral_consent_default": "Consent when the customer has not said",
    "capacity_scale": "Capacity scaling",
    "when_full": "When all matching partners are full",
    "max_declines": "Declines before CSS",
    "accept_within_days": "Acceptance window (days)",
    "remind_after_days": "Reminder after (days)",
    "max_partners_per_customer": "Partners per customer (split)",
    "css_workloads": "Workloads CSS always delivers",
    "disabled_partners": "Partners switched off",
    "max_pause_days": "Longest pause (days)",
}
#: The rules the form shows, in its order; the rest stay in the TOML text only.
FORM_RULES = tuple(RULE_NAMES)[:10]
_KEYS = re.compile(r"\b(" + "|".join(RULE_NAMES) + r")\b")
WHEN_FULL_WORDS = {"css": "Send to the region's CSS queue", "hold": "Hold in the FTCQ"}


def _said(kind: str, message: str) -> None:
    st.session_state[RESULT] = (kind, message)


def named(exc: RulesError) -> str:
    """The error without its source, the rule's name in words before its key: "the rules
    to save: min_seats: got -1" reads "Minimum seats (min_seats): got -1"."""
    _, _, rest = str(exc).partition(": ")
    return _KEYS.sub(lambda m: f"{RULE_NAMES[m.group(1)]} ({m.group(1)})", rest or str(exc), 1)


def save_rules() -> None:
    """Save the edited text as the team's next version (managers only)."""
    text, note = st.session_state.get(RULES_TEXT, ""), st.session_state.get(SAVE_NOTE, "")
    before, who = db.team().version, auth.actor()
    try:
        version = auth.managers_write(
            RESULT,
            SAVING,
            lambda con: team_rules.save(con, text, actor=who, note=note),
            doing="saving the rules",
        )
    except RulesError as exc:
        _said("error", f"Not saved: {named(exc)}")
        return
    if version is None:  # refused, or the store said no: the message is left already
        return
    st.session_state.pop(db.RULES_KEY, None)  # the session follows the team's rules again
    if version == before:
        _said("info", f"Unchanged: this is the text of version {version}; nothing was saved.")
        return
    st.session_state[SAVE_NOTE] = ""
    _said("success", f"Saved as the team's rules, version {version}: every run now uses them.")


def try_rules() -> None:
    """Use the edited text for this session's what-ifs, saving nothing (anyone may)."""
    text = st.session_state.get(RULES_TEXT, "")
    try:
        parse_rules(text, source="edited rules")
    except RulesError as exc:
        _said("error", f"Not used: {named(exc)}")
        return
    st.session_state[db.RULES_KEY] = text
    _said(
        "success",
        "Valid: this session now uses the edited rules for what-ifs (Simulate); the team's "
        "rules are unchanged, and commits keep to them.",
    )


def _fill(rules: Rules) -> None:
    """Put the rules' values into the form's fields (before the widgets are drawn)."""
    for key in FORM_RULES:
        value = getattr(rules, key)
        st.session_state[FIELD + key] = list(value) if isinstance(value, tuple) else value


def from_form() -> None:
    """Write the form's fields into the edited text, through the engine's own TOML: the text
    stays the one thing Try and Save use. A value the rules refuse changes nothing."""
    text = st.session_state.get(RULES_TEXT, "")
    try:
        base = parse_rules(text, source="edited rules")
    except RulesError as exc:
        _said("error", f"Not applied: fix the TOML text first: {named(exc)}")
        return
    try:
        rules = base.replace(**{key: st.session_state[FIELD + key] for key in FORM_RULES})
    except RulesError as exc:
        _said("error", f"Not applied: {named(exc)}")
        return
    st.session_state[RULES_TEXT] = st.session_state[FORM_FROM] = to_toml(rules)


def form(team_text: str) -> None:
    """The common rules as fields over the edited text: filled again whenever the text
    changed (typed, restored, back to the team's), applied to it on every change; while the
    text does not parse they show the last valid rules."""
    text = st.session_state[RULES_TEXT]
    # Streamlit forgets a widget's value while another page is shown: fill those again too.
    missing = any(FIELD + key not in st.session_state for key in FORM_RULES)
    if missing or st.session_state.get(FORM_FROM) != text:
        try:
            _fill(parse_rules(text))
            st.session_state[FORM_FROM] = text
        except RulesError:
            if missing:
                _fill(parse_rules(team_text))
            st.caption("The TOML text has an error: the fields show the last valid rules.")
    workloads = list(
        dict.fromkeys([*Rules.eligible_workloads, *st.session_state[FIELD + "eligible_workloads"]])
    )
    name, change = RULE_NAMES, {"on_change": from_form}
    c1, c2, c3, c4 = st.columns(4)
    c1.number_input(name["min_seats"], step=10, key=FIELD + "min_seats", **change)
    c1.number_input(
        name["capacity_scale"], step=0.1, format="%.2f", key=FIELD + "capacity_scale", **change
    )
    c1.toggle(name["referral_consent_default"], key=FIELD + "referral_consent_default", **change)
    c2.selectbox(
        name["when_full"],
        WHEN_FULL_CHOICES,
        format_func=WHEN_FULL_WORDS.get,
        key=FIELD + "when_full",
        **change,
    )
    c2.number_input(name["max_declines"], step=1, key=FIELD + "max_declines", **change)
    c2.selectbox(
        name["max_partners_per_customer"],
        (1, 2, 3),
        key=FIELD + "max_partners_per_customer",
        help="1: a customer is never split between partners.",
        **change,
    )
    c3.number_input(
        name["accept_within_days"],
        step=1,
        key=FIELD + "accept_within_days",
        help="0: no window.",
        **change,
    )
    c3.number_input(
        name["remind_after_days"],
        step=1,
        key=FIELD + "remind_after_days",
        help="0: no reminder; otherwise below the acceptance window.",
        **change,
    )
    for key in ("eligible_workloads", "css_workloads"):
        c4.multiselect(name[key], workloads, key=FIELD + key, **change)


def back_to_team() -> None:
    """Drop this session's edited rules and show the team's current text again."""
    st.session_state.pop(db.RULES_KEY, None)
    current = db.team()
    st.session_state[RULES_TEXT] = current.text
    _said("info", f"Back to the team's rules (version {current.version}).")


def restore(version: int) -> None:
    """Save an old version's text as the newest version (managers only)."""
    who = auth.actor()
    done = auth.managers_write(
        RESULT,
        "restore a version of the team's rules",
        lambda con: team_rules.restore(con, version, actor=who),
        doing="restoring the rules",
    )
    if done is None:
        return
    st.session_state.pop(db.RULES_KEY, None)
    st.session_state[RULES_TEXT] = db.team().text
    _said("success", f"Version {version} restored as the team's rules (version {done}).")


def editor() -> None:
    """The team's rules beside the editor, the buttons, and the last button's result."""
    current, edited = db.team(), st.session_state.get(db.RULES_KEY)
    st.caption(
        f"The team's rules: version {current.version}, saved by {current.actor} on "
        f"{current.at:%Y-%m-%d %H:%M} ({current.note}). Every commit, expiry and drain uses "
        "them, from this page or the command line."
        + (
            " **This session tries edited rules** in its what-ifs (Simulate): they are not saved."
            if edited
            else ""
        )
    )
    if RULES_TEXT not in st.session_state:
        st.session_state[RULES_TEXT] = edited or current.text
    with st.container(border=True):
        st.markdown(
            "**The common rules**: a change here rewrites the edited TOML below; Try or Save "
            "it there. Queues, regions and paused partners stay in the TOML."
        )
        form(current.text)
    left, right = st.columns(2)
    with left:
        st.markdown(f"**The team's rules** (version {current.version})")
        st.code(current.text, language="toml", height=420, wrap_lines=True)
    with right:
        st.text_area("Edit (TOML)", key=RULES_TEXT, height=420)
        st.text_input(
            "Note (why the rules change)", key=SAVE_NOTE, placeholder="e.g. EMEA queue renamed"
        )
        buttons = st.container(horizontal=True)
        buttons.button(
            "Save as the team's rules", type="primary", on_click=save_rules, key="rules_save"
        )
        buttons.button("Try in this session", on_click=try_rules, key="rules_use")
        buttons.button("Back to the team's rules", on_click=back_to_team, key="rules_reset")
        buttons.download_button(
            "Download rules.toml",
            edited or current.text,
            file_name="rules.toml",
            mime="application/toml",
            icon=":material/download:",
            key="rules_download",
        )
        result = st.session_state.pop(RESULT, None)
        if result:
            getattr(st, result[0])(result[1])


def history() -> None:
    """Every version (newest first), a diff between two of them, and restore."""
    versions = view(team_rules.history)
    st.dataframe(
        pl.DataFrame(
            {
                "version": [v.version for v in versions],
                "saved_at": [v.at for v in versions],
                "saved_by": [v.actor for v in versions],
                "note": [v.note for v in versions],
            }
        ),
        hide_index=True,
        key="rules_history",
    )
    numbers = [v.version for v in versions]
    c1, c2 = st.columns(2)
    # Keyed by the newest version: a new one resets the pair to (the one before, the newest).
    a = c1.selectbox(
        "From version", numbers, index=min(1, len(numbers) - 1), key=f"rules_a_{numbers[0]}"
    )
    b = c2.selectbox("To version", numbers, index=0, key=f"rules_b_{numbers[0]}")
    if a is not None and b is not None:
        text = view(team_rules.diff, a, b)
        if text:
            st.code(text, language="diff", wrap_lines=True)
        else:
            st.info(f"Versions {a} and {b} have the same text.")
        st.button(
            f"Restore version {a}",
            on_click=restore,
            args=(a,),
            key="rules_restore",
            disabled=a == numbers[0],
            help="Saves this version's text again as the newest version (managers only).",
        )


def version_filter(key: str, where: Any = st) -> int | None:
    """A "Rules version" choice for a page's filters (in ``where``, a column or the page):
    the versions runs were made with; None for any, and no choice before a run has one."""
    used = view(team_rules.used)
    if not used:
        return None
    picked: int | None = where.selectbox(
        "Rules version",
        [None, *used],
        format_func=lambda v: "Any version" if v is None else f"version {v}",
        key=key,
        help="Only referrals of runs made with this version of the team's rules (Data page).",
    )
    return picked
