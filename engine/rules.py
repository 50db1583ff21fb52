"""The assignment rules: the defaults of docs/domain.md, loaded from TOML through a strict schema.

A rules file is small and edited by hand (or on the dashboard's Data page), so every
mistake must come back as a sentence that names the key and what was expected: an
unknown key is an error, never a silently ignored typo.
"""

from __future__ import annotations

import dataclasses
import json
import re
import stat
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from engine.iso import COUNTRIES

DEFAULT_RULES_PATH = Path(__file__).resolve().parent.parent / "data" / "rules.toml"

WHEN_FULL_CHOICES = ("css", "hold")
MAX_CAPACITY_SCALE = 100
#: The longest pause a rules file may allow: a partner away for longer is not Referral Ready.
MAX_PAUSE_DAYS = 365


class RulesError(ValueError):
    """A rules file that does not fit the schema; the message says where and why."""


@dataclass(frozen=True)
class Rules:
    """Everything the engine needs to decide one cohort, besides partners and customers."""

    min_seats: int = 150
    eligible_workloads: tuple[str, ...] = (
        "exchange",
        "sharepoint",
        "onedrive",
        "teams",
        "m365-apps",
        "intune",
        "entra-id",
        "windows",
        "defender",
        "purview",
        "viva",
    )
    referral_consent_default: bool = True
    #: What-if knob: every partner's capacity is multiplied by this (rounded down).
    capacity_scale: float = 1.0
    #: What-if knob: partners treated as not Referral Ready for this run.
    disabled_partners: frozenset[str] = frozenset()
    #: Where a customer goes when its matching partners are all full.
    when_full: str = "css"
    #: Declines after which a customer goes to its CSS queue (referral life cycle).
    max_declines: int = 2
    #: Days a partner has to accept a referral before it expires (0: no window).
    accept_within_days: int = 7
    #: Days after which the partner and its PSM are reminded of an active referral (0: never).
    remind_after_days: int = 5
    #: Days after the clock's date a partner's ``paused_until`` may be, at most.
    max_pause_days: int = 30
    #: At most this many partners share one customer by workload (1: never split).
    max_partners_per_customer: int = 1
    #: Eligible workloads CSS always delivers: taken out of matching, a CSS part of their own.
    css_workloads: tuple[str, ...] = ()
    region_of_country: Mapping[str, str] = field(default_factory=dict)
    queue_of_region: Mapping[str, str] = field(default_factory=dict)

    def queue_for(self, country: str) -> str:
        return self.queue_of_region[self.region_of_country[country]]

    def accept_by(self, made: datetime) -> datetime | None:
        """When a referral made at ``made`` expires if still active; None without a window."""
        return made + timedelta(days=self.accept_within_days) if self.accept_within_days else None

    def replace(self, **changes: Any) -> Rules:
        """A copy with some knobs changed, validated like a file would be."""
        merged = to_dict(self)
        for key, value in changes.items():
            if isinstance(value, frozenset | set | tuple):
                value = sorted(value) if isinstance(value, frozenset | set) else list(value)
            merged[key] = value
        return parse_rules_dict(merged, source="overrides")


# The schema: key -> (python type(s), description used in error messages).
_SCALARS: dict[str, tuple[tuple[type, ...], str]] = {
    "min_seats": ((int,), "a whole number >= 0"),
    "referral_consent_default": ((bool,), "true or false"),
    "capacity_scale": ((int, float), "a number from 0 to 100 (1.0 keeps capacity as it is)"),
    "when_full": ((str,), "one of " + ", ".join(repr(c) for c in WHEN_FULL_CHOICES)),
    "max_declines": ((int,), "a whole number >= 1"),
    "accept_within_days": ((int,), "a whole number of days >= 0 (0: no acceptance window)"),
    "remind_after_days": ((int,), "a whole number of days >= 0 (0: no reminder)"),
    "max_pause_days": ((int,), f"a whole number from 0 to {MAX_PAUSE_DAYS}"),
    "max_partners_per_customer": ((int,), "1, 2 or 3 (1: a customer is never split)"),
}
_LISTS = {
    "eligible_workloads": "a list of workload ids (text)",
    "disabled_partners": "a list of partner ids (text)",
    "css_workloads": "a list of eligible workload ids (text) that CSS always delivers",
}
_TABLES = {
    "queues": "a table mapping each region to its CSS queue name",
    "regions": "a table mapping each region to a list of ISO 3166-1 alpha-2 country codes",
}


def _fail(source: str, key: str, message: str) -> RulesError:
    return RulesError(f"{source}: {key}: {message}")


def parse_rules_dict(data: Mapping[str, Any], source: str = "rules") -> Rules:
    """Check ``data`` against the schema and build :class:`Rules`; raise on the first problem."""
    known = set(_SCALARS) | set(_LISTS) | set(_TABLES)
    for key in data:
        if key not in known:
            raise _fail(source, key, f"unknown key; expected one of {', '.join(sorted(known))}")
    missing = [k for k in ("queues", "regions") if k not in data]
    if missing:
        raise _fail(source, missing[0], "missing; " + _TABLES[missing[0]])
    values = {**_scalars(data, source), **_lists(data, source)}
    _check_css_workloads(values, source)
    queues = data["queues"]
    if not isinstance(queues, Mapping) or not queues:
        raise _fail(source, "queues", "expected " + _TABLES["queues"])
    for region, queue in queues.items():
        if not isinstance(queue, str) or not queue.strip():
            raise _fail(source, f"queues.{region}", f"got {queue!r}; expected a queue name (text)")
    return Rules(
        **values,
        region_of_country=_regions(data["regions"], queues, source),
        queue_of_region={str(r): str(q).strip() for r, q in queues.items()},
    )


def _scalars(data: Mapping[str, Any], source: str) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for key, (types, expected) in _SCALARS.items():
        if key not in data:
            continue
        value = data[key]
        # bool is an int in Python; a rules file that says `min_seats = true` is a mistake.
        if isinstance(value, bool) and bool not in types or not isinstance(value, types):
            raise _fail(source, key, f"got {value!r}; expected {expected}")
        values[key] = value
    if values.get("min_seats", 0) < 0:
        raise _fail(source, "min_seats", f"got {values['min_seats']}; expected a whole number >= 0")
    # Bounded: a what-if multiplier beyond 100x is a typo, and huge ones overflow capacity.
    if not 0 <= values.get("capacity_scale", 1.0) <= MAX_CAPACITY_SCALE:  # also rejects nan
        raise _fail(source, "capacity_scale", f"must be a number from 0 to {MAX_CAPACITY_SCALE}")
    if "capacity_scale" in values:
        values["capacity_scale"] = float(values["capacity_scale"])
    if values.get("when_full", "css") not in WHEN_FULL_CHOICES:
        raise _fail(
            source, "when_full", f"got {values['when_full']!r}; expected {_SCALARS['when_full'][1]}"
        )
    if values.get("max_declines", 1) < 1:
        raise _fail(source, "max_declines", "expected a whole number >= 1")
    if values.get("max_partners_per_customer", 1) not in (1, 2, 3):
        raise _fail(
            source,
            "max_partners_per_customer",
            f"got {values['max_partners_per_customer']}; expected "
            + _SCALARS["max_partners_per_customer"][1],
        )
    _check_days(values, source)
    return values


def _check_css_workloads(values: dict[str, Any], source: str) -> None:
    """CSS workloads name eligible workloads (docs/domain.md, "Split by workload"): any
    other id would never reach matching, so naming one is a typo."""
    eligible = values.get("eligible_workloads", Rules.eligible_workloads)
    unknown = [w for w in values.get("css_workloads", ()) if w not in eligible]
    if unknown:
        raise _fail(
            source,
            "css_workloads",
            f"{unknown[0]!r} is not an eligible workload; expected some of {', '.join(eligible)}",
        )


def _check_days(values: dict[str, Any], source: str) -> None:
    """The rules counted in days: the acceptance window and the reminder (docs/domain.md,
    "Referral life cycle"; a reminder at or after the window would come for a referral
    already expired) and the longest pause ("Partner availability and intake")."""
    for key in ("accept_within_days", "remind_after_days"):
        if values.get(key, 0) < 0:
            raise _fail(source, key, f"got {values[key]}; expected {_SCALARS[key][1]}")
    if not 0 <= values.get("max_pause_days", 0) <= MAX_PAUSE_DAYS:
        got = values["max_pause_days"]
        raise _fail(
            source, "max_pause_days", f"got {got}; expected {_SCALARS['max_pause_days'][1]}"
        )
    window = values.get("accept_within_days", Rules.accept_within_days)
    remind = values.get("remind_after_days", Rules.remind_after_days)
    if window and remind and remind >= window:
        raise _fail(
            source,
            "remind_after_days",
            f"got {remind}; must be below accept_within_days ({window}), or 0 for no reminder",
        )


def _lists(data: Mapping[str, Any], source: str) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for key, expected in _LISTS.items():
        if key not in data:
            continue
        value = data[key]
        if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
            raise _fail(source, key, f"got {value!r}; expected {expected}")
        workloads = key in ("eligible_workloads", "css_workloads")
        cleaned = [v.strip().lower() if workloads else v.strip() for v in value]
        if any(not v for v in cleaned):
            raise _fail(source, key, "contains an empty entry")
        values[key] = tuple(dict.fromkeys(cleaned)) if workloads else frozenset(cleaned)
    return values


def _regions(regions: Any, queues: Mapping[str, Any], source: str) -> dict[str, str]:
    """The region of every ISO country, from the ``regions`` table (sorted by country)."""
    if not isinstance(regions, Mapping):
        raise _fail(source, "regions", "expected " + _TABLES["regions"])
    region_of_country: dict[str, str] = {}
    for region, countries in regions.items():
        if region not in queues:
            raise _fail(
                source,
                f"regions.{region}",
                f"region has no queue; add it under [queues] ({', '.join(queues)})",
            )
        if not isinstance(countries, list) or not all(isinstance(c, str) for c in countries):
            raise _fail(source, f"regions.{region}", "expected a list of country codes (text)")
        for code in countries:
            code_up = code.strip().upper()
            if code_up not in COUNTRIES:
                raise _fail(
                    source,
                    f"regions.{region}",
                    f"{code!r} is not an ISO 3166-1 alpha-2 country code",
                )
            if code_up in region_of_country:
                raise _fail(
                    source,
                    f"regions.{region}",
                    f"{code_up} is already in region {region_of_country[code_up]}; "
                    "a country belongs to one region",
                )
            region_of_country[code_up] = region
    unmapped = sorted(set(COUNTRIES) - set(region_of_country))
    if unmapped:
        shown = ", ".join(unmapped[:10]) + (
            f" and {len(unmapped) - 10} more" if len(unmapped) > 10 else ""
        )
        raise _fail(source, "regions", f"every ISO 3166-1 country needs a region; missing {shown}")
    return dict(sorted(region_of_country.items()))


def parse_rules(text: str, source: str = "rules") -> Rules:
    """Rules from TOML text; every problem is a one-line RulesError naming ``source``."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RulesError(f"{source}: {_decode_error(text, str(exc))}") from None
    except RecursionError:  # tomllib recurses once per nested array or inline table
        raise RulesError(
            f"{source}: arrays or inline tables nested too deeply; expected at most a table "
            "of lists (like [regions])"
        ) from None
    return parse_rules_dict(data, source)


def _decode_error(text: str, message: str) -> str:
    """A TOML syntax error named by the key on its line where there is one ("not valid TOML
    in min_seats, line 2: invalid value"): people look for the rule they edited."""
    at = re.search(r" \(at line (\d+), column \d+\)", message)
    lines = text.splitlines()
    if at and 0 < int(at.group(1)) <= len(lines):
        key = re.match(r"\s*([A-Za-z0-9_-]+)\s*=", lines[int(at.group(1)) - 1])
        if key:
            reason = message[: at.start()] + message[at.end() :]
            return f"not valid TOML in {key.group(1)}, line {at.group(1)}: {reason.lower()}"
    return f"not valid TOML: {message}"


def load_rules(path: str | Path | None = None) -> Rules:
    """Rules from ``path``, or the shipped defaults (``data/rules.toml``) when None."""
    p = Path(path) if path is not None else DEFAULT_RULES_PATH
    try:
        mode = p.stat().st_mode  # a FIFO would block the read, a device never end it
        if not stat.S_ISDIR(mode) and not stat.S_ISREG(mode):
            raise RulesError(
                f"{p}: expected a regular file (a rules .toml file), not a special one"
            )
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RulesError(f"{p}: no such rules file") from None
    except IsADirectoryError:
        raise RulesError(f"{p}: is a folder; expected a rules .toml file") from None
    except OSError as exc:
        raise RulesError(f"{p}: cannot read ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise RulesError(f"{p}: not UTF-8 text") from None
    return parse_rules(text, source=str(p))


def to_dict(rules: Rules) -> dict[str, Any]:
    """The rules as plain data, in the shape of the TOML file (round-trips through parse)."""
    regions: dict[str, list[str]] = {r: [] for r in rules.queue_of_region}
    for country, region in rules.region_of_country.items():
        regions.setdefault(region, []).append(country)
    out: dict[str, Any] = {}
    for f in dataclasses.fields(rules):
        if f.name in ("region_of_country", "queue_of_region"):
            continue
        value = getattr(rules, f.name)
        out[f.name] = (
            sorted(value)
            if isinstance(value, frozenset)
            else (list(value) if isinstance(value, tuple) else value)
        )
    out["queues"] = dict(rules.queue_of_region)
    out["regions"] = regions
    return out


def to_toml(rules: Rules) -> str:
    """Render rules as TOML text; what the dashboard shows and saves."""
    data = to_dict(rules)
    lines = ["# FRP Assign rules (see README: Rules)."]
    for key, value in data.items():
        if key in ("queues", "regions"):
            continue
        lines.append(f"{key} = {_toml_value(value)}")
    lines.append("")
    lines.append("[queues]")
    for region, queue in data["queues"].items():
        lines.append(f"{_toml_key(region)} = {_toml_value(queue)}")
    lines.append("")
    lines.append("[regions]")
    for region, countries in data["regions"].items():
        lines.append(f"{_toml_key(region)} = {_toml_value(countries)}")
    return "\n".join(lines) + "\n"


def _toml_key(key: str) -> str:
    # TOML bare keys are ASCII only; str.isalnum() would also let "Amérique" through.
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else _toml_value(key)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        # json.dumps escapes quotes, backslashes and control characters the TOML way.
        return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot render {value!r} as TOML")
