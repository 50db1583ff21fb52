-- Version 3 of the store (kept for restoring a version-3 backup; store/migrations.py).
CREATE SEQUENCE IF NOT EXISTS run_seq START 1;
CREATE SEQUENCE IF NOT EXISTS referral_seq START 1;
CREATE SEQUENCE IF NOT EXISTS task_seq START 1;
CREATE SEQUENCE IF NOT EXISTS audit_seq START 1;
CREATE SEQUENCE IF NOT EXISTS ftcq_seq START 1;

CREATE TABLE IF NOT EXISTS meta (key VARCHAR PRIMARY KEY, value VARCHAR NOT NULL);

-- Partners as imported. active_referrals is the load held outside this tool (from the
-- partner file); referrals committed here are counted on top (see partner_state).
CREATE TABLE IF NOT EXISTS partners (
    partner_id VARCHAR PRIMARY KEY,
    name VARCHAR NOT NULL,
    countries VARCHAR[] NOT NULL,
    languages VARCHAR[] NOT NULL,
    workloads VARCHAR[] NOT NULL,
    capacity BIGINT NOT NULL,
    active_referrals BIGINT NOT NULL,
    referral_ready BOOLEAN NOT NULL,
    psm_name VARCHAR NOT NULL,
    psm_email VARCHAR NOT NULL,
    contact_email VARCHAR NOT NULL,
    updated_at TIMESTAMP NOT NULL,
    -- Availability and intake (docs/domain.md): not Referral Ready before paused_until, at
    -- most monthly_quota new referrals a calendar month; NULL for neither.
    paused_until DATE,
    monthly_quota BIGINT,
    -- The size buckets the partner takes (docs/domain.md, "Customer size"); NULL or
    -- empty: every size.
    sizes VARCHAR[]
);

-- The round-robin order: larger last_assigned = assigned more recently. Moved only by
-- commits (and by a partner file that carries last_assigned), never by simulations.
CREATE TABLE IF NOT EXISTS rr_order (
    partner_id VARCHAR PRIMARY KEY,
    last_assigned BIGINT NOT NULL
);

-- Every customer the store has seen; in_ftcq marks those waiting in the FTCQ backlog.
CREATE TABLE IF NOT EXISTS customers (
    tenant_id VARCHAR PRIMARY KEY,
    name VARCHAR NOT NULL,
    country VARCHAR NOT NULL,
    language VARCHAR NOT NULL,
    seats BIGINT NOT NULL,
    workloads VARCHAR[] NOT NULL,
    gateway BOOLEAN NOT NULL,
    contact_email VARCHAR NOT NULL,
    referral_consent BOOLEAN,
    in_ftcq BOOLEAN NOT NULL,
    ftcq_seq BIGINT NOT NULL,
    queued_at TIMESTAMP NOT NULL,
    held_since TIMESTAMP
);

CREATE TABLE IF NOT EXISTS runs (
    run_id BIGINT PRIMARY KEY,
    created_at TIMESTAMP NOT NULL,
    actor VARCHAR NOT NULL,
    policy VARCHAR NOT NULL,
    source VARCHAR NOT NULL,
    rules_toml VARCHAR NOT NULL,
    customers BIGINT NOT NULL,
    placed BIGINT NOT NULL,
    css BIGINT NOT NULL,
    skipped BIGINT NOT NULL
);

CREATE TABLE IF NOT EXISTS referrals (
    referral_id BIGINT PRIMARY KEY,
    run_id BIGINT,
    tenant_id VARCHAR NOT NULL,
    outcome VARCHAR NOT NULL,
    partner_id VARCHAR,
    psm_name VARCHAR,
    psm_email VARCHAR,
    queue VARCHAR NOT NULL,
    reason VARCHAR NOT NULL,
    status VARCHAR NOT NULL,
    trace VARCHAR,
    pool_key VARCHAR,
    region VARCHAR,
    country VARCHAR,
    language VARCHAR,
    eligible_workloads VARCHAR[],
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL,
    decline_reason VARCHAR,
    -- When the partner and its PSM were reminded of a referral still active
    -- (store/lifecycle.py, expire); NULL until then, so it is reminded at most once.
    reminded_at TIMESTAMP,
    -- The customer's part this referral is (docs/domain.md, "Split by workload"): its
    -- number among the customer's parts (1 when it is not split) and the workloads it
    -- covers (all the customer's when it is not split).
    part INTEGER,
    workloads VARCHAR[]
);

CREATE TABLE IF NOT EXISTS pools (
    pool_key VARCHAR PRIMARY KEY,
    partner_ids VARCHAR[] NOT NULL
);

CREATE TABLE IF NOT EXISTS ftop_tasks (
    task_id BIGINT PRIMARY KEY,
    task_number INTEGER NOT NULL,
    name VARCHAR NOT NULL,
    tenant_id VARCHAR NOT NULL,
    referral_id BIGINT NOT NULL,
    partner_id VARCHAR NOT NULL,
    role VARCHAR NOT NULL,
    service VARCHAR NOT NULL,
    mandatory BOOLEAN NOT NULL,
    status VARCHAR NOT NULL,
    created_at TIMESTAMP NOT NULL,
    closed_at TIMESTAMP
);

CREATE TABLE IF NOT EXISTS outbox (
    message_id VARCHAR PRIMARY KEY,
    referral_id BIGINT NOT NULL,
    tenant_id VARCHAR NOT NULL,
    recipient_role VARCHAR NOT NULL,
    to_email VARCHAR NOT NULL,
    subject VARCHAR NOT NULL,
    body VARCHAR NOT NULL,
    status VARCHAR NOT NULL,
    created_at TIMESTAMP NOT NULL,
    sent_at TIMESTAMP,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error VARCHAR,
    -- The HTML part of a notification (the plain-text part is `body`); NULL for messages
    -- queued before version 1 gained it: sent as text only.
    body_html VARCHAR,
    -- A sender's claim on a pending message (store/outbox.py): which run holds it and
    -- since when; NULL when nobody does. Another sender leaves it alone until it is stale.
    claimed_by VARCHAR,
    claimed_at TIMESTAMP
);

CREATE TABLE IF NOT EXISTS audit_log (
    id BIGINT PRIMARY KEY,
    logged_at TIMESTAMP NOT NULL,
    actor VARCHAR NOT NULL,
    action VARCHAR NOT NULL,
    subject VARCHAR,
    details VARCHAR
);


CREATE OR REPLACE VIEW partner_state AS
SELECT
    p.*,
    p.active_referrals + coalesce(o.open_referrals, 0) AS active_total,
    coalesce(o.open_referrals, 0) AS open_referrals,
    r.last_assigned
FROM partners p
LEFT JOIN (
    SELECT partner_id, count(*) AS open_referrals
    FROM referrals
    WHERE outcome = 'frp' AND status IN ('active', 'accepted', 'handed_off')
    GROUP BY partner_id
) o USING (partner_id)
LEFT JOIN rr_order r USING (partner_id);
