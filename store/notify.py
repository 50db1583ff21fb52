"""Referral notifications: three messages per FRP referral (customer, partner, PSM), and
the reminder of a referral still waiting for the partner's answer (partner, PSM).

Each message is rendered from Jinja2 templates, a plain-text and an HTML part plus a
subject, when the commit queues it in the outbox (inside the commit's transaction);
sending is a separate step (``store.outbox``). The templates ship in ``templates/<lang>/``
and a folder named by ``FRP_TEMPLATES`` overrides them file by file.

Language: all three messages of a referral are in the customer's language (the partner
speaks it: matching requires it); a language without a complete set of templates falls
back to English. HTML is autoescaped; subjects are folded to one line, so a name cannot
add mail headers.

Privacy: the templates see only what a referral needs, namely the customer's name, tenant
id, country, language and contact email, the eligible workloads, the partner's and the
PSM's names and contacts. Seats, Gateway status and internal notes are never passed to
them, so no template (shipped or overriding) can share them.

Each message id is derived from the referral and the recipient role (and ``reminder`` for
a reminder), so it is stable across retries and resends (it becomes the Message-ID header).
The partner's and the PSM's messages state the accept-by date when the rules set an
acceptance window (docs/domain.md, "Referral life cycle").
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

import jinja2
import polars as pl

from store.errors import StoreError

ROLES = ("customer", "partner", "psm")
#: Who is reminded of a referral still active: the partner's referral contact and its PSM.
REMINDED = ("partner", "psm")
MESSAGE_DOMAIN = "frp-assign.invalid"

#: The shipped templates; ``$FRP_TEMPLATES`` names a folder whose files win over these.
TEMPLATES_DIR = Path(__file__).resolve().parent.parent / "templates"
TEMPLATES_ENV = "FRP_TEMPLATES"
DEFAULT_LANGUAGE = "en"
#: Every language needs these files (``<lang>/<name>``); they may include others.
REQUIRED = ("subject.txt", *(f"{role}.{part}" for role in ROLES for part in ("txt", "html")))
#: A language's reminder (one body for both recipients); without them, the English one.
REMINDER = ("reminder_subject.txt", "reminder.txt", "reminder.html")

#: Product names for workload ids in messages (an unknown id is shown as it is).
WORKLOAD_NAMES = {
    "exchange": "Exchange Online",
    "sharepoint": "SharePoint Online",
    "onedrive": "OneDrive",
    "teams": "Microsoft Teams",
    "m365-apps": "Microsoft 365 Apps",
    "intune": "Microsoft Intune",
    "entra-id": "Microsoft Entra ID",
    "windows": "Windows",
    "defender": "Microsoft Defender",
    "purview": "Microsoft Purview",
    "viva": "Microsoft Viva",
}

#: Columns of the outbox rows :func:`referral_messages` returns.
MESSAGE_SCHEMA = {
    "message_id": pl.String,
    "referral_id": pl.Int64,
    "tenant_id": pl.String,
    "recipient_role": pl.String,
    "to_email": pl.String,
    "subject": pl.String,
    "body": pl.String,
    "body_html": pl.String,
}


class TemplateError(StoreError):
    """A template folder or file that cannot be used; the message names it and the line."""


def message_id(referral_id: int, role: str, kind: str = "") -> str:
    """``kind`` "reminder" for a reminder; "" for the referral notification."""
    suffix = f"-{kind}" if kind else ""
    return f"<referral-{referral_id}-{role}{suffix}@{MESSAGE_DOMAIN}>"


def template_folders(folder: str | Path | None = None) -> tuple[Path, ...]:
    """Where templates are looked up, first match wins: ``folder`` (default
    ``$FRP_TEMPLATES``), then the shipped ``templates/``."""
    chosen = folder if folder is not None else os.environ.get(TEMPLATES_ENV) or None
    if chosen is None:
        return (TEMPLATES_DIR,)
    path = Path(chosen)
    if not path.is_dir():
        raise TemplateError(
            f"{TEMPLATES_ENV}={path}: no such folder; point it at a folder laid out like "
            f"{TEMPLATES_DIR} (files there override the shipped ones), or unset it"
        )
    return (path.resolve(), TEMPLATES_DIR)


@lru_cache(maxsize=8)
def _environment(folders: tuple[Path, ...]) -> jinja2.Environment:
    # One environment per folder chain: Jinja compiles each template once and keeps it
    # (auto_reload re-reads a file only when its modification time changes).
    return jinja2.Environment(
        loader=jinja2.ChoiceLoader([jinja2.FileSystemLoader(str(f)) for f in folders]),
        autoescape=jinja2.select_autoescape(["html"], default_for_string=False),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        auto_reload=True,
    )


class Templates:
    """The compiled templates of one folder chain, per language, loaded on first use."""

    def __init__(self, folder: str | Path | None = None) -> None:
        self.folders = template_folders(folder)
        self.env = _environment(self.folders)
        names = set(self.env.list_templates())
        prefixes = {n.split("/", 1)[0] for n in names if "/" in n}

        def complete(files: tuple[str, ...]) -> tuple[str, ...]:
            return tuple(
                sorted(lang for lang in prefixes if all(f"{lang}/{f}" in names for f in files))
            )

        self.languages = complete(REQUIRED)
        self.reminder_languages = complete(REMINDER)
        for have, files in ((self.languages, REQUIRED), (self.reminder_languages, REMINDER)):
            if DEFAULT_LANGUAGE not in have:
                missing = [f for f in files if f"{DEFAULT_LANGUAGE}/{f}" not in names]
                raise TemplateError(
                    f"templates: English ({DEFAULT_LANGUAGE}/) is incomplete, missing "
                    f"{', '.join(missing)}; it is the fallback for every language"
                )
        self._loaded: dict[str, jinja2.Template] = {}

    def language(self, wanted: str | None, reminder: bool = False) -> str:
        """``wanted`` when it has a complete set of templates (of the reminder, with
        ``reminder``), else English."""
        lang = (wanted or "").strip().lower()
        have = self.reminder_languages if reminder else self.languages
        return lang if lang in have else DEFAULT_LANGUAGE

    def _get(self, name: str) -> jinja2.Template:
        if name not in self._loaded:
            try:
                self._loaded[name] = self.env.get_template(name)
            except jinja2.TemplateSyntaxError as exc:
                raise TemplateError(
                    f"template {exc.filename or exc.name}, line {exc.lineno}: {exc.message}"
                ) from None
            except jinja2.TemplateNotFound as exc:
                raise TemplateError(f"template {exc.name}: not found in {self._where()}") from None
        return self._loaded[name]

    def _where(self) -> str:
        return " or ".join(str(f) for f in self.folders)

    def render(self, lang: str, role: str, context: dict[str, Any]) -> tuple[str, str, str]:
        """(subject, text, html) of one message; ``lang`` as given by :meth:`language`."""
        return self._render(("subject.txt", f"{role}.txt", f"{role}.html"), lang, context)

    def render_reminder(self, lang: str, context: dict[str, Any]) -> tuple[str, str, str]:
        """(subject, text, html) of a reminder; ``lang`` from ``language(..., reminder=True)``."""
        return self._render(REMINDER, lang, context)

    def _render(
        self, files: tuple[str, ...], lang: str, context: dict[str, Any]
    ) -> tuple[str, str, str]:
        # All three loaded first: a broken one is reported before any is rendered.
        subject_t, text_t, html_t = (self._get(f"{lang}/{f}") for f in files)
        current = subject_t
        try:
            subject = " ".join(subject_t.render(context).split())
            ctx = {**context, "subject": subject}
            current = text_t
            text = text_t.render(ctx)
            current = html_t
            html = html_t.render(ctx)
        except jinja2.TemplateError as exc:
            where = current.filename or current.name
            raise TemplateError(f"template {where}: {exc}") from None
        return subject, text, html


def workload_names(ids: Iterable[str] | None) -> list[str]:
    return [WORKLOAD_NAMES.get(w, w) for w in ids or ()]


def context(row: dict[str, Any], role: str, lang: str) -> dict[str, Any]:
    """What a template sees for one message (README, "Delivery", lists every variable)."""
    return {
        "role": role,
        "language": lang,
        "referral_id": row["referral_id"],
        "customer": {
            "name": row["customer_name"],
            "tenant_id": row["tenant_id"],
            "country": row.get("country"),
            "language": row.get("language"),
            "contact_email": row["customer_email"],
        },
        "partner": {
            "partner_id": row["partner_id"],
            "name": row["partner_name"],
            "contact_email": row["partner_email"],
        },
        "psm": {"name": row["psm_name"], "email": row["psm_email"]},
        "workloads": workload_names(row["eligible_workloads"]),
        "workload_ids": list(row["eligible_workloads"] or ()),
        "accept_by": _when(row.get("accept_by")),
        "parts": _parts(row),
    }


def _parts(row: dict[str, Any]) -> list[dict[str, Any]]:
    """The partners sharing the customer, each with its workloads (docs/domain.md, "Split
    by workload"): the ``parts`` given, else this referral's partner alone."""
    given = row.get("parts") or [
        {
            "partner_id": row["partner_id"],
            "name": row["partner_name"],
            "contact_email": row["partner_email"],
            "workloads": row["eligible_workloads"],
        }
    ]
    return [
        {
            "partner": {k: p[k] for k in ("partner_id", "name", "contact_email")},
            "workloads": workload_names(p["workloads"]),
        }
        for p in given
    ]


def _when(moment: datetime | None) -> str | None:
    """An accept-by time as messages state it, in UTC to the minute (rounded down: the
    partner is never told a time after the real one)."""
    return f"{moment:%Y-%m-%d %H:%M} UTC" if moment is not None else None


_INPUT = (
    "referral_id",
    "tenant_id",
    "customer_name",
    "customer_email",
    "eligible_workloads",
    "partner_id",
    "partner_name",
    "partner_email",
    "psm_name",
    "psm_email",
)
_OPTIONAL = ("language", "country", "accept_by", "parts", "to_customer")


def referral_messages(referred: pl.DataFrame, templates: Templates | None = None) -> pl.DataFrame:
    """Outbox rows (MESSAGE_SCHEMA) for FRP referrals, three per referral.

    ``referred`` has one row per FRP referral with: referral_id, tenant_id, customer_name,
    customer_email, eligible_workloads (list), partner_id, partner_name, partner_email,
    psm_name, psm_email, and optionally the customer's ``language`` (else English),
    ``country`` and ``accept_by`` (a datetime; none: no acceptance window). A customer
    split across partners: each row's ``eligible_workloads`` are its part's, ``parts``
    lists every part of the customer (partner_id, name, contact_email, workloads) for the
    customer's message, which only the row with ``to_customer`` true gets. Only these
    reach the templates: no seat counts or internal notes.
    """
    return _messages(referred, templates, ROLES, "")


def reminder_messages(waiting: pl.DataFrame, templates: Templates | None = None) -> pl.DataFrame:
    """Outbox rows (MESSAGE_SCHEMA) reminding the partner and its PSM of referrals still
    active: two per referral, ``waiting`` shaped as for :func:`referral_messages`."""
    return _messages(waiting, templates, REMINDED, "reminder")


def _messages(
    frame: pl.DataFrame, templates: Templates | None, roles: tuple[str, ...], kind: str
) -> pl.DataFrame:
    if frame.height == 0:
        return pl.DataFrame(schema=MESSAGE_SCHEMA)
    tpl = templates or Templates()
    cols = [c for c in (*_INPUT, *_OPTIONAL) if c in frame.columns]
    out: dict[str, list[Any]] = {k: [] for k in MESSAGE_SCHEMA}
    for row in frame.select(cols).iter_rows(named=True):
        lang = tpl.language(row.get("language"), reminder=bool(kind))
        for role in roles:
            if role == "customer" and row.get("to_customer") is False:
                continue  # a later part of a split customer: its first part's message
            ctx = context(row, role, lang)
            subject, text, html = (
                tpl.render_reminder(lang, ctx) if kind else tpl.render(lang, role, ctx)
            )
            out["message_id"].append(message_id(row["referral_id"], role, kind))
            out["referral_id"].append(row["referral_id"])
            out["tenant_id"].append(row["tenant_id"])
            out["recipient_role"].append(role)
            out["to_email"].append(row[f"{role}_email"])
            out["subject"].append(subject)
            out["body"].append(text)
            out["body_html"].append(html)
    return pl.DataFrame(out, schema=MESSAGE_SCHEMA).sort("referral_id", "recipient_role")
