"""What of a customer's personal data the current user may see.

Managers see customer names and contact emails whole; viewers see them masked on every
page (the role comes from :mod:`ui.auth`). Two kinds of function live here: the masks
themselves (``mask_email``, ``mask_emails_in_text``, ``mask_name``, ``mask_name_in_text``),
which always mask, and the ``..._for_viewers`` ones, which mask only when the current user
is not a manager and are what the pages call. Downloads hold the data in full and are
audited instead (:func:`ui.auth.export_callback`).
"""

from __future__ import annotations

import html
import re
from collections.abc import Mapping

import polars as pl

from ui import auth

EMAIL_RE = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")


# --- Emails ----------------------------------------------------------------------------


def mask_email(email: str | None) -> str | None:
    """``jane.doe@example.com`` -> ``j***@example.com`` (the domain stays, for support)."""
    if not email or "@" not in email:
        return email
    local, _, domain = email.rpartition("@")
    return f"{local[:1]}***@{domain}"


def mask_emails_in_text(text: str | None) -> str | None:
    """Every email address in ``text`` masked (message bodies, plain or HTML)."""
    return EMAIL_RE.sub(lambda m: mask_email(m.group(0)) or "", text) if text else text


def mask_email_for_viewers(email: str | None) -> str | None:
    """A customer's email as the current user may see it."""
    return email if auth.is_manager() else mask_email(email)


def mask_email_column_for_viewers(
    frame: pl.DataFrame, column: str, when: pl.Expr | None = None
) -> pl.DataFrame:
    """``frame`` with the emails of ``column`` masked for viewers (only in the rows where
    ``when`` holds, e.g. customer recipients); unchanged for managers."""
    if auth.is_manager() or column not in frame.columns:
        return frame
    masked = pl.col(column).str.replace(r"^([^@])[^@]*@", "${1}***@")
    if when is not None:
        masked = pl.when(when).then(masked).otherwise(pl.col(column))
    return frame.with_columns(masked.alias(column))


# --- Names -----------------------------------------------------------------------------


def mask_name(name: str | None) -> str | None:
    """``Müller Maschinenbau AG`` -> ``M***``: rows stay tellable apart (with the tenant id
    beside them) without showing a viewer who the customer is."""
    return f"{name[:1]}***" if name else name


def mask_name_for_viewers(name: str | None) -> str | None:
    """A customer's name as the current user may see it."""
    return name if auth.is_manager() else mask_name(name)


def mask_name_columns_for_viewers(frame: pl.DataFrame, *columns: str) -> pl.DataFrame:
    """``frame`` with the customer names of ``columns`` masked for viewers."""
    if auth.is_manager():
        return frame
    masked = [
        (pl.col(c).str.slice(0, 1) + "***").alias(c)
        for c in columns
        if c in frame.columns and frame.schema[c] == pl.String
    ]
    return frame.with_columns(masked) if masked else frame


def mask_name_in_text(text: str | None, name: str | None) -> str | None:
    """``text`` (a subject, a body, a label) without the customer's ``name``: the name as
    written and HTML-escaped (the HTML part) both become :func:`mask_name`."""
    if not text or not name:
        return text
    mask = mask_name(name) or ""
    return text.replace(name, mask).replace(html.escape(name), mask)


def mask_name_in_text_for_viewers(text: str | None, name: str | None) -> str | None:
    """``text`` as the current user may see it: without the customer's ``name`` for viewers."""
    return text if auth.is_manager() else mask_name_in_text(text, name)


def mask_names_in_text_column_for_viewers(
    frame: pl.DataFrame, column: str, names: Mapping[str, str]
) -> pl.DataFrame:
    """``frame`` with each row's customer name (``names``: tenant id -> name, by the row's
    ``tenant_id``) taken out of ``column`` for viewers. Row by row: shown frames are capped."""
    if auth.is_manager() or column not in frame.columns or frame.height == 0:
        return frame
    texts = [
        mask_name_in_text(text, names.get(tenant))
        for text, tenant in frame.select(column, "tenant_id").iter_rows()
    ]
    return frame.with_columns(pl.Series(column, texts, dtype=pl.String))


# --- Messages --------------------------------------------------------------------------


def mask_message_for_viewers(text: str | None, name: str | None) -> str | None:
    """A message body (plain or HTML) as the current user may see it: for viewers, every
    email address in it masked, then the customer's ``name``."""
    return text if auth.is_manager() else mask_name_in_text(mask_emails_in_text(text), name)
