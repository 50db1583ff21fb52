"""A seeded synthetic world for benchmarks: partners and a cohort of customers, skewed like
the real thing.

- **Countries**: 40 ISO countries with Zipf-like demand (a few big markets, a long tail
  of small ones). Customers speak the country's main language mostly, sometimes a second
  national language, and English now and then.
- **Partners**: a home country (more partners where demand is high, but every country has
  a few), often one to three neighbours as well; the languages of the countries they serve,
  usually English; a workload portfolio where the core workloads are common and the niche
  ones rare; capacity skewed between 5 and 500; about 10% not Referral Ready; three
  quarters already have a round-robin position (``last_assigned``).
- **Customers**: skewed seat counts (some below the 150-seat minimum), one to five
  workloads drawn by popularity from the 11 eligible ids and a few that FastTrack does not
  cover (``dynamics-365`` ...), consent mostly given (sometimes empty, sometimes refused),
  about 20% Gateway.

Everything is drawn with numpy and assembled with polars / pyarrow, column-wise, so a
million customers take a few seconds; the same (size, partners, seed) always gives the
same files. The partners depend only on (partners, seed), so every cohort size of a
benchmark meets the same 2,000 partners. Files are Parquet with exactly the columns of
``engine.columns`` (list columns as ``list<string>``). Workloads and company name parts are
``engine.vocabulary``'s, shared with the demo world and synthetic cohorts.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from engine.columns import CUSTOMER_SCHEMA, PARTNER_SCHEMA
from engine.vocabulary import COMPANY_PREFIXES, INDUSTRIES, NON_ELIGIBLE_WORKLOADS, WORKLOAD_DEMAND

#: Bump when the generator changes, so cached worlds are not reused across versions.
GENERATOR_VERSION = 1

#: (country, languages with their share of the country's customers, neighbours), by
#: demand rank: the first is the biggest market. Shares need not sum to 1; the main
#: language (first) takes what is left after the others and English. The benchmark's own
#: table: the demo world's (data/demo/countries.csv) has weights and regions instead.
COUNTRIES: tuple[tuple[str, tuple[tuple[str, float], ...], tuple[str, ...]], ...] = (
    ("US", (("en", 0.0), ("es", 0.08)), ("CA", "MX")),
    ("GB", (("en", 0.0),), ("IE", "NL", "FR")),
    ("DE", (("de", 0.0),), ("AT", "CH", "NL", "PL")),
    ("JP", (("ja", 0.0),), ("KR",)),
    ("FR", (("fr", 0.0),), ("BE", "CH", "ES", "DE")),
    ("IN", (("en", 0.0), ("hi", 0.10)), ("AE", "SG")),
    ("BR", (("pt", 0.0),), ("AR", "CO", "CL")),
    ("CA", (("en", 0.0), ("fr", 0.22)), ("US",)),
    ("AU", (("en", 0.0),), ("NZ", "SG")),
    ("IT", (("it", 0.0),), ("CH", "FR", "AT")),
    ("ES", (("es", 0.0),), ("PT", "FR")),
    ("NL", (("nl", 0.0),), ("BE", "DE", "GB")),
    ("MX", (("es", 0.0),), ("US", "CO")),
    ("KR", (("ko", 0.0),), ("JP",)),
    ("SE", (("sv", 0.0),), ("NO", "DK", "FI")),
    ("CH", (("de", 0.0), ("fr", 0.22), ("it", 0.06)), ("DE", "FR", "IT", "AT")),
    ("PL", (("pl", 0.0),), ("DE", "CZ")),
    ("BE", (("nl", 0.0), ("fr", 0.40)), ("NL", "FR", "DE")),
    ("CN", (("zh", 0.0),), ("HK", "TW", "SG")),
    ("SG", (("en", 0.0), ("zh", 0.15)), ("MY", "TH")),
    ("AT", (("de", 0.0),), ("DE", "CH", "CZ", "HU")),
    ("DK", (("da", 0.0),), ("SE", "NO", "DE")),
    ("NO", (("no", 0.0),), ("SE", "DK")),
    ("IE", (("en", 0.0),), ("GB",)),
    ("ZA", (("en", 0.0),), ()),
    ("FI", (("fi", 0.0), ("sv", 0.05)), ("SE",)),
    ("AE", (("ar", 0.0),), ("SA", "EG")),
    ("NZ", (("en", 0.0),), ("AU",)),
    ("PT", (("pt", 0.0),), ("ES",)),
    ("IL", (("he", 0.0),), ()),
    ("CZ", (("cs", 0.0),), ("AT", "DE", "PL", "HU")),
    ("TR", (("tr", 0.0),), ("GR",)),
    ("AR", (("es", 0.0),), ("CL", "BR")),
    ("CO", (("es", 0.0),), ("MX", "CL")),
    ("SA", (("ar", 0.0),), ("AE", "EG")),
    ("TW", (("zh", 0.0),), ("HK",)),
    ("HK", (("zh", 0.0), ("en", 0.2)), ("TW", "CN")),
    ("TH", (("th", 0.0),), ("MY", "SG")),
    ("HU", (("hu", 0.0),), ("AT", "CZ")),
    ("CL", (("es", 0.0),), ("AR", "CO")),
    ("GR", (("el", 0.0),), ("TR",)),
    ("MY", (("ms", 0.0), ("zh", 0.2)), ("SG", "TH")),
    ("EG", (("ar", 0.0),), ("SA", "AE")),
)
#: Zipf exponent of customer demand over the countries (rank 1 is the biggest).
ZIPF_S = 1.1
#: Partners per country follow demand ** this (flatter: small countries still have some).
PARTNER_SPREAD = 0.75
#: Share of a non-English country's customers who ask for English.
ENGLISH_SHARE = 0.10

#: How often customers ask for the workloads FastTrack does not cover: the benchmark's own
#: weights (the demo world and synthetic cohorts pick among them evenly).
NON_ELIGIBLE_DEMAND: dict[str, float] = dict(
    zip(NON_ELIGIBLE_WORKLOADS, (2.5, 1.5, 1.0), strict=True)
)
#: Workloads customers ask for, with their popularity: the vocabulary's eligible ones, most
#: asked first (the order a customer's workloads are listed in), then the uncovered ones.
CUSTOMER_WORKLOADS: tuple[tuple[str, float], ...] = (
    *sorted(WORKLOAD_DEMAND.items(), key=lambda item: -item[1]),
    *NON_ELIGIBLE_DEMAND.items(),
)
#: How many workloads a customer asks for (1..5) and how often.
WORKLOAD_COUNT_P = (0.35, 0.30, 0.20, 0.10, 0.05)
#: Chance that a partner is endorsed for each workload (core common, niche rare).
PARTNER_WORKLOAD_P: tuple[tuple[str, float], ...] = (
    ("exchange", 0.85),
    ("teams", 0.85),
    ("sharepoint", 0.75),
    ("onedrive", 0.75),
    ("intune", 0.55),
    ("entra-id", 0.50),
    ("defender", 0.45),
    ("m365-apps", 0.60),
    ("windows", 0.35),
    ("purview", 0.30),
    ("viva", 0.20),
    ("dynamics-365", 0.10),
)
#: Extra (neighbour) countries a partner serves: 0, 1, 2, 3 with these chances.
EXTRA_COUNTRIES_P = (0.45, 0.25, 0.18, 0.12)
READY_SHARE = 0.90
CAPACITY_MIN, CAPACITY_MAX = 5, 500
CAPACITY_MEDIAN, CAPACITY_SIGMA = 30.0, 1.0
HAS_ORDER_SHARE = 0.75
PSM_COUNT = 60

SEATS_MEDIAN, SEATS_SIGMA = 700.0, 1.4
CONSENT_P = (0.93, 0.03, 0.04)  # true, false, empty
GATEWAY_SHARE = 0.20

#: Company names use the vocabulary's first 34 prefixes and 16 industries: drawing from
#: more would change every generated world (bump GENERATOR_VERSION when doing so).
_PREFIX = COMPANY_PREFIXES[:34]
_INDUSTRY = INDUSTRIES[:16]
_PARTNER_SUFFIX = ("Consulting", "Cloud Partners", "Digital", "IT Services", "Solutions")
_FIRST = ("Alex", "Sam", "Robin", "Kim", "Jordan", "Maria", "Chen", "Yuki", "Noor", "Lena")
_LAST = ("Berg", "Okafor", "Tanaka", "Moreau", "Silva", "Novak", "Lund", "Haddad", "Rossi")


@dataclass(frozen=True)
class World:
    """Paths of one generated world."""

    partners: Path
    customers: Path
    customers_count: int
    partners_count: int
    seed: int
    capacity_scale: int = 1


#: The "world with room": capacities (and the loads already on them) this many times the
#: benchmark's, so partners have room for nearly every eligible customer (about 770k of
#: 1M placed) and the selection loop runs for every one of them.
ROOM_SCALE = 40


def parameters() -> dict[str, object]:
    """The generator's shape, recorded with benchmark results (and shown in the docs)."""
    return {
        "generator_version": GENERATOR_VERSION,
        "countries": len(COUNTRIES),
        "zipf_exponent": ZIPF_S,
        "customer_workloads": [w for w, _ in CUSTOMER_WORKLOADS],
        "capacity_range": [CAPACITY_MIN, CAPACITY_MAX],
        "capacity_median": CAPACITY_MEDIAN,
        "referral_ready_share": READY_SHARE,
        "gateway_share": GATEWAY_SHARE,
        "consent_true_false_empty": list(CONSENT_P),
        "seats_median": SEATS_MEDIAN,
    }


def _partner_rng(seed: int) -> np.random.Generator:
    return np.random.default_rng([seed, GENERATOR_VERSION, 0])


def _customer_rng(seed: int, count: int) -> np.random.Generator:
    return np.random.default_rng([seed, GENERATOR_VERSION, 1, count])


def country_weights() -> np.ndarray:
    """Customer demand per country (sums to 1), Zipf-like by rank."""
    ranks = np.arange(1, len(COUNTRIES) + 1, dtype=np.float64)
    w = ranks**-ZIPF_S
    return w / w.sum()


def _language_table() -> tuple[list[str], np.ndarray, np.ndarray]:
    """(language codes, per-country cumulative probabilities, per-country language index)."""
    codes: list[str] = []
    rows: list[list[tuple[int, float]]] = []
    for _, langs, _ in COUNTRIES:
        main = langs[0][0]
        shares = [(code, share) for code, share in langs[1:]]
        if main != "en" and all(code != "en" for code, _ in shares):
            shares.append(("en", ENGLISH_SHARE))
        rest = 1.0 - sum(s for _, s in shares)
        row = []
        for code, share in [(main, rest), *shares]:
            if code not in codes:
                codes.append(code)
            row.append((codes.index(code), share))
        rows.append(row)
    width = max(len(r) for r in rows)
    cum = np.ones((len(rows), width))
    idx = np.zeros((len(rows), width), dtype=np.int64)
    for c, row in enumerate(rows):
        acc = 0.0
        for j, (li, share) in enumerate(row):
            acc += share
            cum[c, j] = acc
            idx[c, j] = li
        cum[c, len(row) - 1 :] = 1.0
        idx[c, len(row) :] = row[-1][0]
    return codes, cum, idx


def _list_array(names: list[str], picks: np.ndarray, offsets: np.ndarray) -> pa.ListArray:
    """A list<string> column: row r holds ``names[picks[offsets[r]:offsets[r + 1]]]``."""
    values = pa.array(names, pa.string()).take(pa.array(picks, pa.int32()))
    return pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), values)


def _to_arrow(frame: pl.DataFrame, schema: dict[str, pl.DataType]) -> pa.Table:
    """Exactly the engine's columns, with list<string> and string (not the large types)."""
    fields = []
    for name, dtype in schema.items():
        if isinstance(dtype, pl.List):
            t: pa.DataType = pa.list_(pa.string())
        elif dtype == pl.String:
            t = pa.string()
        elif dtype == pl.Int64:
            t = pa.int64()
        elif dtype == pl.Boolean:
            t = pa.bool_()
        elif dtype == pl.Date:
            t = pa.date32()
        else:  # pragma: no cover - the schemas use only the types above
            raise TypeError(f"unexpected dtype {dtype} for {name}")
        fields.append(pa.field(name, t))
    target = pa.schema(fields)
    return frame.select(list(schema)).to_arrow().cast(target)


def make_partners(count: int, seed: int, capacity_scale: int = 1) -> pl.DataFrame:
    """``count`` partners (PARTNER_SCHEMA); depends only on (count, seed, capacity_scale).

    ``capacity_scale`` multiplies every capacity (after the draw, so the partners are
    otherwise the same); active referrals are the same share of the larger capacity.
    """
    rng = _partner_rng(seed)
    n_countries = len(COUNTRIES)
    spread = country_weights() ** PARTNER_SPREAD
    home = rng.choice(n_countries, size=count, p=spread / spread.sum())
    extra = rng.choice(len(EXTRA_COUNTRIES_P), size=count, p=EXTRA_COUNTRIES_P)
    codes = [c for c, _, _ in COUNTRIES]

    countries: list[list[str]] = []
    languages: list[list[str]] = []
    english = rng.random(count) < 0.7
    second = rng.random(count) < 0.5
    for i in range(count):
        code, langs, neighbours = COUNTRIES[home[i]]
        k = min(int(extra[i]), len(neighbours))
        served = [code, *(neighbours[j] for j in sorted(rng.permutation(len(neighbours))[:k]))]
        countries.append(served)
        spoken = [langs[0][0]]
        if second[i]:
            spoken += [lang for lang, _ in langs[1:]]
        for c in served[1:]:
            spoken.append(COUNTRIES[codes.index(c)][1][0][0])
        if english[i]:
            spoken.append("en")
        languages.append(list(dict.fromkeys(spoken)))

    names = [w for w, _ in PARTNER_WORKLOAD_P]
    probs = np.array([p for _, p in PARTNER_WORKLOAD_P])
    covered = rng.random((count, len(names))) < probs
    covered[~covered[:, : len(names) - 1].any(axis=1), 0] = True  # at least one eligible
    workloads = [[names[j] for j in np.flatnonzero(row)] for row in covered]

    capacity = np.clip(
        np.round(rng.lognormal(np.log(CAPACITY_MEDIAN), CAPACITY_SIGMA, size=count)),
        CAPACITY_MIN,
        CAPACITY_MAX,
    ).astype(np.int64) * int(capacity_scale)
    active = np.floor(capacity * rng.uniform(0.0, 0.8, size=count)).astype(np.int64)
    ready = rng.random(count) < READY_SHARE
    order = rng.permutation(count) + 1
    has_order = rng.random(count) < HAS_ORDER_SHARE
    psm = rng.integers(0, PSM_COUNT, size=count)
    name_a = rng.integers(0, len(_PREFIX), size=count)
    name_b = rng.integers(0, len(_PARTNER_SUFFIX), size=count)

    ids = [f"P{i + 1:05d}" for i in range(count)]
    psm_first = [_FIRST[k % len(_FIRST)] for k in psm]
    psm_last = [_LAST[(k // len(_FIRST)) % len(_LAST)] for k in psm]
    frame = pl.DataFrame(
        {
            "partner_id": ids,
            "name": [
                f"{_PREFIX[a]} {_PARTNER_SUFFIX[b]} {i + 1}"
                for i, (a, b) in enumerate(zip(name_a, name_b, strict=True))
            ],
            "countries": countries,
            "languages": languages,
            "workloads": workloads,
            "capacity": capacity,
            "active_referrals": active,
            "referral_ready": ready,
            "psm_name": [f"{f} {last}" for f, last in zip(psm_first, psm_last, strict=True)],
            "psm_email": [f"psm{k + 1:02d}@psm.example" for k in psm],
            "contact_email": [f"referrals@{pid.lower()}.example" for pid in ids],
            "last_assigned": [int(o) if h else None for o, h in zip(order, has_order, strict=True)],
            "paused_until": [None] * count,  # the generated partners have no pauses or quotas
            "monthly_quota": [None] * count,
        },
        schema=PARTNER_SCHEMA,
    )
    return frame


def _customer_workloads(rng: np.random.Generator, count: int) -> pa.ListArray:
    """k distinct workload ids per customer, drawn by popularity (Gumbel top-k), listed in
    the catalogue's order; built as one flat array plus offsets (no Python loop)."""
    wl_names = np.array([w for w, _ in CUSTOMER_WORKLOADS])
    wl_logw = np.log(np.array([w for _, w in CUSTOMER_WORKLOADS]))
    k = rng.choice(len(WORKLOAD_COUNT_P), size=count, p=WORKLOAD_COUNT_P) + 1
    keys = wl_logw[None, :] + rng.gumbel(size=(count, len(wl_names)))
    rank = np.argsort(np.argsort(-keys, axis=1), axis=1)
    chosen = rank < k[:, None]
    _, cols = np.nonzero(chosen)
    offsets = np.zeros(count + 1, dtype=np.int64)
    np.cumsum(chosen.sum(axis=1), out=offsets[1:])
    return _list_array(wl_names.tolist(), cols, offsets)


def make_customers(count: int, seed: int) -> pl.DataFrame:
    """``count`` customers (CUSTOMER_SCHEMA) in cohort order, drawn column-wise."""
    rng = _customer_rng(seed, count)
    codes = np.array([c for c, _, _ in COUNTRIES])
    lang_codes, cum, lang_idx = _language_table()

    country = rng.choice(len(COUNTRIES), size=count, p=country_weights())
    u = rng.random(count)
    col = (u[:, None] >= cum[country]).sum(axis=1)
    col = np.minimum(col, cum.shape[1] - 1)
    language = np.array(lang_codes)[lang_idx[country, col]]

    workloads = _customer_workloads(rng, count)
    seats = np.maximum(
        1, np.round(rng.lognormal(np.log(SEATS_MEDIAN), SEATS_SIGMA, size=count))
    ).astype(np.int64)
    gateway = rng.random(count) < GATEWAY_SHARE
    consent_kind = rng.choice(3, size=count, p=CONSENT_P)
    guid = rng.integers(0, 256, size=(count, 16), dtype=np.uint8)
    name_a = rng.integers(0, len(_PREFIX), size=count)
    name_b = rng.integers(0, len(_INDUSTRY), size=count)

    hexed = pl.Series(
        "hex",
        pa.FixedSizeBinaryArray.from_buffers(
            pa.binary(16), count, [None, pa.py_buffer(guid.tobytes())]
        ).cast(pa.binary()),
    ).bin.encode("hex")
    base = pl.DataFrame(
        {
            "hex": hexed,
            "n": np.arange(1, count + 1, dtype=np.int64),
            "prefix": np.array(_PREFIX)[name_a],
            "industry": np.array(_INDUSTRY)[name_b],
            "country": codes[country],
            "language": language,
            "seats": seats,
            "gateway": gateway,
            "consent": consent_kind,
        }
    ).with_columns(pl.Series("workloads", workloads))
    h = pl.col("hex")
    frame = base.select(
        pl.concat_str(
            h.str.slice(0, 8),
            h.str.slice(8, 4),
            h.str.slice(12, 4),
            h.str.slice(16, 4),
            h.str.slice(20, 12),
            separator="-",
        ).alias("tenant_id"),
        pl.concat_str(pl.col("prefix"), pl.col("industry"), pl.col("n"), separator=" ").alias(
            "name"
        ),
        "country",
        "language",
        "seats",
        "workloads",
        "gateway",
        pl.concat_str(
            pl.lit("it@"), pl.col("prefix").str.to_lowercase(), pl.col("n"), pl.lit(".example")
        ).alias("contact_email"),
        pl.when(pl.col("consent") == 0)
        .then(True)
        .when(pl.col("consent") == 1)
        .then(False)
        .otherwise(None)
        .alias("referral_consent"),
    )
    return frame.cast(CUSTOMER_SCHEMA)  # type: ignore[arg-type]


def write_parquet(frame: pl.DataFrame, schema: dict[str, pl.DataType], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    pq.write_table(_to_arrow(frame, schema), tmp)
    tmp.replace(path)
    return path


def ensure_world(
    customers: int, partners: int, seed: int, cache: Path, capacity_scale: int = 1
) -> World:
    """The world's Parquet files in ``cache``, generated when missing (reused otherwise).

    A ``capacity_scale`` other than 1 changes only the partners file (same customers).
    """
    folder = cache / f"world-v{GENERATOR_VERSION}-s{seed}"
    scaled = f"-x{capacity_scale}" if capacity_scale != 1 else ""
    p_path = folder / f"partners-{partners}{scaled}.parquet"
    c_path = folder / f"customers-{customers}.parquet"
    if not p_path.exists():
        write_parquet(make_partners(partners, seed, capacity_scale), PARTNER_SCHEMA, p_path)
    if not c_path.exists():
        write_parquet(make_customers(customers, seed), CUSTOMER_SCHEMA, c_path)
    return World(p_path, c_path, customers, partners, seed, capacity_scale)
