"""Referral notifications rendered from the Jinja2 templates: languages, content, privacy,
escaping, overrides from ``FRP_TEMPLATES``, and the speed of a large commit."""

from __future__ import annotations

import re
import shutil
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import pytest

from bench.unit import referred
from engine.rules import load_rules
from store.commits import commit
from store.db import connect
from store.migrations import V1_DDL
from store.notify import (
    MESSAGE_SCHEMA,
    REMINDER,
    REQUIRED,
    ROLES,
    TEMPLATES_DIR,
    TemplateError,
    Templates,
    message_id,
    referral_messages,
    reminder_messages,
)

SUBJECTS = {
    "en": "Your request for a FastTrack Specialist has been assigned - Acme",
    "de": "Ihre Anfrage für einen FastTrack-Spezialisten wurde zugewiesen - Acme",
    "fr": "Votre demande de spécialiste FastTrack a été attribuée - Acme",
    "es": "Su solicitud de un especialista de FastTrack ha sido asignada - Acme",
}
NEXT_STEP = {
    "en": "Next step:",
    "de": "Nächster Schritt:",
    "fr": "Prochaine étape :",
    "es": "Siguiente paso:",
}


def by_role(frame: pl.DataFrame) -> dict[str, dict[str, Any]]:
    return {r["recipient_role"]: r for r in frame.iter_rows(named=True)}


@pytest.fixture(autouse=True)
def no_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FRP_TEMPLATES", raising=False)


def test_shipped_languages_are_complete() -> None:
    tpl = Templates()
    assert tpl.languages == ("de", "en", "es", "fr")
    for lang in tpl.languages:
        for name in REQUIRED:
            assert (TEMPLATES_DIR / lang / name).is_file()


@pytest.mark.parametrize("lang", ["en", "de", "fr", "es"])
def test_three_messages_in_the_customers_language(lang: str) -> None:
    out = referral_messages(referred(language=lang))
    assert out.schema == pl.Schema(MESSAGE_SCHEMA)
    assert out["recipient_role"].to_list() == sorted(ROLES)
    msgs = by_role(out)
    assert {r: m["to_email"] for r, m in msgs.items()} == {
        "customer": "it@acme.example",
        "partner": "referrals@contoso.example",
        "psm": "pat@psm.example",
    }
    for role, m in msgs.items():
        assert m["message_id"] == message_id(1, role)
        assert m["subject"] == SUBJECTS[lang]
        for body in (m["body"], m["body_html"]):
            # Who was referred to whom, the workloads, both contacts, the next step.
            for needed in (
                "Acme",
                "T1",
                "it@acme.example",
                "Contoso Partners",
                "P7",
                "referrals@contoso.example",
                "Pat Sullivan",
                "pat@psm.example",
                "Exchange Online",
                "Microsoft Intune",
            ):
                assert needed in body, (role, needed)
        assert NEXT_STEP[lang] in m["body"]
        assert m["body_html"].startswith("<!DOCTYPE html>")
        assert f'<html lang="{lang}">' in m["body_html"]
    # Each greets its own reader.
    greet = {"en": "Hello", "de": "Guten Tag", "fr": "Bonjour", "es": "Hola,"}[lang]
    assert msgs["customer"]["body"].startswith(f"{greet} Acme")
    assert msgs["partner"]["body"].startswith(f"{greet} Contoso Partners")
    assert msgs["psm"]["body"].startswith(f"{greet} Pat Sullivan")


def test_english_next_step_is_fasttrack_ready_partner_onboarding() -> None:
    msgs = by_role(referral_messages(referred()))
    assert (
        "contact you at it@acme.example to begin FastTrack Ready Partner onboarding"
        in (msgs["customer"]["body"])
    )
    assert (
        "please contact Acme at it@acme.example to begin FastTrack Ready Partner onboarding"
        in (msgs["partner"]["body"])
    )


@pytest.mark.parametrize("lang", ["ja", "pt", "", None, "DE"])
def test_other_languages_fall_back_to_english(lang: str | None) -> None:
    out = referral_messages(referred(language=lang))
    want = SUBJECTS["de"] if lang == "DE" else SUBJECTS["en"]  # case does not matter
    assert set(out["subject"]) == {want}


def test_without_a_language_column_english() -> None:
    out = referral_messages(referred(language="de").drop("language", "country"))
    assert set(out["subject"]) == {SUBJECTS["en"]}


def test_html_is_escaped_and_the_subject_is_one_line() -> None:
    name = '<script>alert("x")</script> & Sons\r\nBcc: victim@example.com'
    msgs = by_role(referral_messages(referred(customer_name=name)))
    html = msgs["partner"]["body_html"]
    assert "<script>" not in html
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; &amp; Sons" in html
    assert '<script>alert("x")</script> & Sons' in msgs["partner"]["body"]  # text stays text
    for m in msgs.values():
        assert "\n" not in m["subject"] and "\r" not in m["subject"]
        assert m["subject"].endswith("& Sons Bcc: victim@example.com")


def test_the_partner_never_sees_seats_or_notes() -> None:
    # Even if a commit handed them over, the templates never receive them.
    frame = referred().with_columns(
        pl.lit(98765).alias("seats"), pl.lit("internal: difficult customer").alias("notes")
    )
    for m in referral_messages(frame).iter_rows(named=True):
        for body in (m["body"], m["body_html"]):
            assert "98765" not in body and "98,765" not in body and "difficult" not in body


def test_a_template_cannot_reach_seats(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "en").mkdir()
    (tmp_path / "en" / "partner.txt").write_text("Seats: {{ seats }}\n", encoding="utf-8")
    monkeypatch.setenv("FRP_TEMPLATES", str(tmp_path))
    with pytest.raises(TemplateError, match=r"en/partner\.txt.*'seats' is undefined"):
        referral_messages(referred().with_columns(pl.lit(500).alias("seats")))


def test_override_folder_wins_file_by_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "de").mkdir()
    (tmp_path / "de" / "customer.txt").write_text(
        "Hallo {{ customer.name }}! Partner: {{ partner.name }} ({{ workloads|join(', ') }})\n",
        encoding="utf-8",
    )
    (tmp_path / "de" / "subject.txt").write_text(
        "Neue Zuweisung für {{ customer.name }}\n", encoding="utf-8"
    )
    monkeypatch.setenv("FRP_TEMPLATES", str(tmp_path))
    msgs = by_role(referral_messages(referred(language="de")))
    assert msgs["customer"]["body"] == (
        "Hallo Acme! Partner: Contoso Partners (Exchange Online, Microsoft Intune)\n"
    )
    assert msgs["customer"]["subject"] == "Neue Zuweisung für Acme"
    assert "Guten Tag Acme" in msgs["customer"]["body_html"]  # the shipped HTML part
    assert msgs["partner"]["body"].startswith("Guten Tag Contoso Partners")  # shipped
    # English is untouched by a German override.
    assert by_role(referral_messages(referred()))["customer"]["subject"] == SUBJECTS["en"]


def test_override_folder_can_add_a_language(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    it = tmp_path / "it"
    it.mkdir()
    (it / "subject.txt").write_text(
        "La sua richiesta è stata assegnata - {{ customer.name }}\n", encoding="utf-8"
    )
    monkeypatch.setenv("FRP_TEMPLATES", str(tmp_path))
    # Incomplete: English.
    assert Templates().languages == ("de", "en", "es", "fr")
    assert set(referral_messages(referred(language="it"))["subject"]) == {SUBJECTS["en"]}
    for role in ROLES:
        (it / f"{role}.txt").write_text("Ciao {{ customer.name }}\n", encoding="utf-8")
        (it / f"{role}.html").write_text(
            '{% extends "_layout.html" %}{% block content %}<p>Ciao {{ customer.name }}</p>'
            "{% endblock %}",
            encoding="utf-8",
        )
    assert "it" in Templates().languages
    msgs = by_role(referral_messages(referred(language="it")))
    assert msgs["psm"]["subject"] == "La sua richiesta è stata assegnata - Acme"
    assert msgs["psm"]["body"] == "Ciao Acme\n"
    assert '<html lang="it">' in msgs["psm"]["body_html"]


def test_bad_override_folder_or_template_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FRP_TEMPLATES", str(tmp_path / "nowhere"))
    with pytest.raises(TemplateError, match=r"FRP_TEMPLATES=.*nowhere: no such folder"):
        referral_messages(referred())
    (tmp_path / "en").mkdir()
    (tmp_path / "en" / "psm.html").write_text("<p>\n{% if %}</p>\n", encoding="utf-8")
    monkeypatch.setenv("FRP_TEMPLATES", str(tmp_path))
    with pytest.raises(TemplateError, match=r"psm\.html, line 2"):
        referral_messages(referred())


def test_a_broken_template_writes_nothing(
    demo_db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "en").mkdir()
    (tmp_path / "en" / "customer.txt").write_text("{{ customer.nickname }}\n", encoding="utf-8")
    monkeypatch.setenv("FRP_TEMPLATES", str(tmp_path))
    con = connect(demo_db)
    try:
        counted = "SELECT (SELECT count(*) FROM referrals), (SELECT count(*) FROM outbox)"
        before = con.execute(counted).fetchall()[0]
        with pytest.raises(TemplateError, match="nickname"):
            commit(con, load_rules())
        assert con.execute(counted).fetchall()[0] == before  # the demo's history, no more
    finally:
        con.close()


def test_a_thousand_referrals_render() -> None:
    """How fast is measured by ``make bench`` (bench/unit.py), not asserted here."""
    frame = referred(1_000).with_columns(
        pl.Series("language", ["en", "de", "fr", "es", "ja"] * 200),
        pl.format("Company {}", pl.col("referral_id")).alias("customer_name"),
    )
    out = referral_messages(frame)
    assert out.height == 3_000 and out["message_id"].n_unique() == 3_000


def test_commit_renders_every_message_in_its_customers_language(demo_db: Path) -> None:
    con = connect(demo_db)
    try:
        run_id = commit(con, load_rules()).run_id
        rows = con.execute(
            """
            SELECT o.subject, o.body, o.body_html, c.language, c.name
            FROM outbox o JOIN customers c USING (tenant_id) JOIN referrals r USING (referral_id)
            WHERE r.run_id = ?
            """,
            [run_id],
        ).fetchall()
    finally:
        con.close()
    assert rows
    prefix = {lang: s.rsplit(" - ", 1)[0] for lang, s in SUBJECTS.items()}
    seen = set()
    for subject, body, html, lang, name in rows:
        shown = lang if lang in prefix else "en"
        seen.add(shown)
        assert subject == f"{prefix[shown]} - {' '.join(name.split())}"
        assert html.startswith("<!DOCTYPE html>") and f'<html lang="{shown}">' in html
        assert NEXT_STEP[shown] in body
    assert {"en", "de", "fr"} <= seen


def test_demo_templates_copy_is_a_valid_override(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The README tells people to start an override from a copy of templates/.
    shutil.copytree(TEMPLATES_DIR, tmp_path / "mine")
    monkeypatch.setenv("FRP_TEMPLATES", str(tmp_path / "mine"))
    assert referral_messages(referred()).equals(
        referral_messages(referred(), Templates(TEMPLATES_DIR))
    )


def test_empty_input_gives_an_empty_frame() -> None:
    out = referral_messages(referred().head(0))
    assert out.height == 0 and out.schema == pl.Schema(MESSAGE_SCHEMA)


def test_old_database_gains_the_html_column(tmp_path: Path) -> None:
    path = tmp_path / "old.duckdb"
    raw = duckdb.connect(str(path))
    # A version-1 store as the first release made it: its outbox has no body_html.
    raw.execute(re.sub(r"(?m)^ALTER TABLE .*;\n", "", V1_DDL))
    raw.execute("INSERT INTO meta VALUES ('schema_version', '1')")
    raw.execute(
        "INSERT INTO outbox VALUES ('<m>', 1, 'T1', 'psm', 'a@b.example', 's', 'b', "
        "'pending', now()::TIMESTAMP, NULL, 0, NULL)"
    )
    raw.close()
    con = connect(path)
    try:
        assert con.execute("SELECT message_id, body_html FROM outbox").fetchall() == [("<m>", None)]
    finally:
        con.close()


# --- the accept-by time and the reminder (docs/domain.md, "Referral life cycle") ---------

ACCEPT_BY = datetime(2026, 3, 9, 9, 0, 59)  # stated to the minute, rounded down
REMINDER_SUBJECTS = {
    "en": "Reminder: a FastTrack referral is waiting for an answer - Acme",
    "de": "Erinnerung: Eine FastTrack-Vermittlung wartet auf Antwort - Acme",
    "fr": "Rappel : une attribution FastTrack attend une réponse - Acme",
    "es": "Recordatorio: una asignación de FastTrack espera respuesta - Acme",
}


@pytest.mark.parametrize("lang", ["en", "de", "fr", "es"])
def test_partner_and_psm_are_told_the_accept_by_time(lang: str) -> None:
    msgs = by_role(referral_messages(referred(language=lang, accept_by=ACCEPT_BY)))
    for role in ("partner", "psm"):
        assert "2026-03-09 09:00 UTC" in msgs[role]["body"], role
        assert "<strong>2026-03-09 09:00 UTC</strong>" in msgs[role]["body_html"], role
    assert "UTC" not in msgs["customer"]["body"]
    without = referral_messages(referred(language=lang, accept_by=None))
    assert not any("UTC" in b for b in without["body"].to_list() + without["body_html"].to_list())


def test_shipped_languages_have_the_reminder() -> None:
    tpl = Templates()
    assert tpl.reminder_languages == tpl.languages
    for lang in tpl.languages:
        for name in REMINDER:
            assert (TEMPLATES_DIR / lang / name).is_file()


@pytest.mark.parametrize("lang", ["en", "de", "fr", "es"])
def test_a_reminder_goes_to_partner_and_psm_in_the_customers_language(lang: str) -> None:
    out = reminder_messages(referred(language=lang, accept_by=ACCEPT_BY))
    assert out.schema == pl.Schema(MESSAGE_SCHEMA)
    msgs = by_role(out)
    assert {r: (m["to_email"], m["message_id"]) for r, m in msgs.items()} == {
        "partner": ("referrals@contoso.example", message_id(1, "partner", "reminder")),
        "psm": ("pat@psm.example", message_id(1, "psm", "reminder")),
    }
    greet = {"en": "Hello", "de": "Guten Tag", "fr": "Bonjour", "es": "Hola,"}[lang]
    assert msgs["partner"]["body"].startswith(f"{greet} Contoso Partners")
    assert msgs["psm"]["body"].startswith(f"{greet} Pat Sullivan")
    for m in msgs.values():
        assert m["subject"] == REMINDER_SUBJECTS[lang]
        for body in (m["body"], m["body_html"]):
            for needed in ("Acme", "T1", "Exchange Online", "2026-03-09 09:00 UTC"):
                assert needed in body, (m["recipient_role"], needed)
        assert f'<html lang="{lang}">' in m["body_html"]


def test_a_language_without_reminder_files_gets_the_english_reminder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    it = tmp_path / "it"
    it.mkdir()
    for name in REQUIRED:  # a complete Italian notification, but no reminder
        (it / name).write_text("Ciao {{ customer.name }}\n", encoding="utf-8")
    monkeypatch.setenv("FRP_TEMPLATES", str(tmp_path))
    assert "it" in Templates().languages and "it" not in Templates().reminder_languages
    out = reminder_messages(referred(language="it", accept_by=ACCEPT_BY))
    assert set(out["subject"]) == {REMINDER_SUBJECTS["en"]}
