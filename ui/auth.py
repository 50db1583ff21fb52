"""Sign-in, roles, and the audit of downloads of personal data.

Sign-in is optional. With an ``[auth]`` section in ``.streamlit/secrets.toml`` the
dashboard asks for an OpenID Connect sign-in (``st.login``) and shows nothing else until
then; each signed-in user gets a role from the ``[frp.roles]`` table (exact email, then
``*@domain``, else ``[frp] default_role``, else ``viewer``). Without ``[auth]`` the
dashboard runs in local mode: one user, who has every role.

Roles: ``viewer`` browses and simulates (trying rules in a session); ``manager`` also
commits, imports, saves the team's rules, sends the outbox, closes tasks and records
partner responses. Every write path calls
:func:`require` (or :func:`refusal` in a callback) at the moment it writes, on the server,
so a hidden or stale button cannot write for a viewer. Viewers see customer contact
emails and names masked on every page (:mod:`ui.privacy`); downloads of personal data
(which hold both in full) are audited here (:func:`export_callback`).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import duckdb
import streamlit as st

from store.db import audit
from store.errors import StoreError
from ui import db

T = TypeVar("T")

VIEWER, MANAGER = "viewer", "manager"
ROLES = (VIEWER, MANAGER)  # in increasing order of rights
LOCAL_ACTOR = "dashboard"  # the audit actor in local mode (as before sign-in existed)
EXPORT_ACTION = "export_personal_data"
LOCAL_CAPTION = "Local mode: no sign-in configured; you have every role."


@dataclass(frozen=True)
class User:
    name: str
    email: str
    role: str
    local: bool = False

    def can(self, role: str) -> bool:
        return ROLES.index(self.role) >= ROLES.index(role)

    @property
    def actor(self) -> str:
        """Who the audit log names for this user's writes."""
        return LOCAL_ACTOR if self.local else (self.email or self.name)


LOCAL_USER = User("Local user", "", MANAGER, local=True)


# --- Configuration ---------------------------------------------------------------------


def _secrets() -> Mapping[str, Any]:
    """``st.secrets`` as a mapping, empty when there is no secrets file."""
    try:
        if not st.secrets.load_if_toml_exists():
            return {}
        return st.secrets.to_dict()
    except Exception:  # an unreadable secrets file is reported by Streamlit itself
        return {}


def auth_configured() -> bool:
    return bool(_secrets().get("auth"))


def role_for(email: str, roles: Mapping[str, str], default: str = VIEWER) -> str:
    """The role of ``email``: its own entry, else its domain's ``*@domain`` entry, else
    ``default``. Case-insensitive; an unknown role name counts as ``viewer``."""
    table = {str(k).strip().lower(): str(v).strip().lower() for k, v in roles.items()}
    address = email.strip().lower()
    role = table.get(address)
    if role is None and "@" in address:
        role = table.get("*@" + address.rpartition("@")[2])
    if role is None:
        role = default.strip().lower()
    return role if role in ROLES else VIEWER


def _role_settings() -> tuple[Mapping[str, str], str]:
    frp = _secrets().get("frp") or {}
    return frp.get("roles") or {}, str(frp.get("default_role") or VIEWER)


# --- The user --------------------------------------------------------------------------


def signed_in_identity() -> dict[str, Any] | None:
    """The identity provider's claims for this session (``st.user``), None when not signed
    in. The one place the user is read: tests patch it."""
    info = st.user.to_dict()
    return info if info.get("is_logged_in") else None


def current_user() -> User | None:
    """Who is using the dashboard; None when sign-in is configured and nobody signed in."""
    if not auth_configured():
        return LOCAL_USER
    identity = signed_in_identity()
    if identity is None:
        return None
    email = str(identity.get("email") or "")
    name = str(identity.get("name") or email or identity.get("sub") or "signed-in user")
    roles, default = _role_settings()
    return User(name, email, role_for(email, roles, default) if email else VIEWER)


def actor() -> str:
    user = current_user()
    return user.actor if user is not None else "anonymous"


def is_manager() -> bool:
    user = current_user()
    return user is not None and user.can(MANAGER)


def refusal(role: str, what: str) -> str | None:
    """None when the current user has ``role``, else the message saying why not."""
    user = current_user()
    if user is not None and user.can(role):
        return None
    who = "You are not signed in" if user is None else f"You are signed in as a {user.role}"
    return f"Only {role}s can {what}. {who}, so nothing was written."


def sentence(text: str) -> str:
    """A change's ``describe()`` (which starts in lower case, to be quoted inside other
    text) as a message of its own: capitalised."""
    return text[:1].upper() + text[1:]


def managers_write(
    result_key: str,
    what: str,
    change: Callable[[duckdb.DuckDBPyConnection], T],
    *,
    doing: str,
) -> T | None:
    """A manager's change from a button's callback, written through ``ui.db.write``.

    A callback cannot draw, so a refusal (not a manager: "Only managers can ``what``") or
    a store error is left in ``st.session_state[result_key]`` as ``("error", message)`` for
    the page's next run to show, and None is returned: nothing was written then."""
    refused = refusal(MANAGER, what)
    if refused:
        st.session_state[result_key] = ("error", refused)
        return None
    try:
        return db.write(change, what=doing)
    except StoreError as exc:
        st.session_state[result_key] = ("error", f"Nothing changed: {exc}")
        return None


def require(role: str, what: str) -> bool:
    """Check the role at the moment of writing: False (and an error on the page) if not."""
    message = refusal(role, what)
    if message is not None:
        st.error(message, icon=":material/lock:")
        return False
    return True


# --- Sign-in screen and the sidebar panel ----------------------------------------------


def _providers(section: Mapping[str, Any]) -> list[str | None]:
    """None for the default provider ([auth] itself), else the named ones ([auth.NAME])."""
    named = [k for k, v in section.items() if isinstance(v, Mapping)]
    return [None] if "client_id" in section or not named else named


def authlib_installed() -> bool:
    """st.login needs Authlib (``streamlit[auth]``); st.user and st.logout do not."""
    return importlib.util.find_spec("authlib") is not None


def _sign_in_screen() -> None:
    st.title("FRP Assign")
    st.write("Sign in to see partner capacity, simulate cohorts and manage referrals.")
    if not authlib_installed():
        st.error(
            "Sign-in is configured in `.streamlit/secrets.toml`, but Authlib is not "
            "installed: `pip install 'streamlit[auth]'`, then restart the dashboard."
        )
        return
    for provider in _providers(_secrets().get("auth") or {}):
        label = "Sign in" if provider is None else f"Sign in with {provider}"
        args = () if provider is None else (provider,)
        st.button(label, type="primary", on_click=st.login, args=args, icon=":material/login:")


def sidebar() -> User:
    """In app.py, before the navigation: the user panel in the sidebar; when sign-in is
    configured and nobody is signed in, the sign-in screen and nothing else (st.stop)."""
    user = current_user()
    if user is None:
        st.navigation([st.Page(_sign_in_screen, title="Sign in")], position="hidden").run()
        st.stop()
    with st.sidebar:
        if user.local:
            st.caption(LOCAL_CAPTION)
        else:
            st.markdown(f"**{user.name}**  \n{user.email}  \nRole: **{user.role}**")
            st.button("Sign out", on_click=st.logout, icon=":material/logout:", key="sign_out")
    return user


# --- Downloads of personal data --------------------------------------------------------


def record_export(con: duckdb.DuckDBPyConnection, who: str, subject: str, details: str) -> None:
    audit(con, who, EXPORT_ACTION, subject, details)


def log_export(subject: str, details: str = "") -> None:
    """A download of personal data: who, what (``subject``) into the audit log."""
    from ui import db

    with db.session() as con:
        record_export(con, actor(), subject, details)


def export_callback(subject: str, details: str = "") -> Callable[[], None]:
    """``st.download_button(on_click=...)`` for a file holding personal data."""
    return lambda: log_export(subject, details)
