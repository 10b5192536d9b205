-- Tocsin initial schema: tenants and keys, playbook bundles and deployments, alerts and
-- their delivery receipts, cases with their timeline, runs with their action journal.
-- Every tenant-owned table carries tenant_id; every query filters on it.

CREATE TABLE tenants (
    id          text PRIMARY KEY CHECK (id ~ '^[a-z0-9][a-z0-9-]{0,62}$'),
    name        text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- API and ingest keys. Only a SHA-256 of the key is stored; `prefix` (the first characters
-- of the key) finds the row, then the hash is compared in constant time.
CREATE TABLE api_keys (
    id          uuid PRIMARY KEY,
    tenant_id   text NOT NULL REFERENCES tenants (id),
    kind        text NOT NULL CHECK (kind IN ('ingest', 'api')),
    name        text NOT NULL,
    prefix      text NOT NULL UNIQUE,
    key_hash    bytea NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz
);
CREATE INDEX api_keys_tenant ON api_keys (tenant_id);

-- A bundle is a content-addressed playbook directory: its files and the playbook
-- metadata extracted at deploy time.
CREATE TABLE bundles (
    tenant_id   text NOT NULL REFERENCES tenants (id),
    hash        text NOT NULL,
    files       jsonb NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, hash)
);

CREATE TABLE playbooks (
    tenant_id    text NOT NULL,
    bundle_hash  text NOT NULL,
    name         text NOT NULL,
    module       text NOT NULL,
    function     text NOT NULL,
    trigger      text NOT NULL,
    when_cond    jsonb,
    priority     text NOT NULL CHECK (priority IN ('low', 'normal', 'high')),
    timeout_ms   bigint NOT NULL,
    file         text NOT NULL,
    line         integer NOT NULL,
    PRIMARY KEY (tenant_id, bundle_hash, name),
    FOREIGN KEY (tenant_id, bundle_hash) REFERENCES bundles (tenant_id, hash)
);

-- Deployment history; the newest row per tenant is the active bundle.
CREATE TABLE deployments (
    id           bigserial PRIMARY KEY,
    tenant_id    text NOT NULL,
    bundle_hash  text NOT NULL,
    deployed_by  text NOT NULL,
    deployed_at  timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (tenant_id, bundle_hash) REFERENCES bundles (tenant_id, hash)
);
CREATE INDEX deployments_tenant ON deployments (tenant_id, id DESC);

CREATE TABLE cases (
    id          uuid PRIMARY KEY,
    tenant_id   text NOT NULL REFERENCES tenants (id),
    title       text NOT NULL,
    status      text NOT NULL DEFAULT 'new'
                CHECK (status IN ('new', 'in_progress', 'resolved', 'closed')),
    severity    text NOT NULL CHECK (severity IN ('info', 'low', 'medium', 'high', 'critical')),
    version     integer NOT NULL DEFAULT 1,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX cases_tenant ON cases (tenant_id, created_at DESC);

CREATE TABLE alerts (
    id               uuid PRIMARY KEY,
    tenant_id        text NOT NULL REFERENCES tenants (id),
    source           text NOT NULL,
    source_ref       text NOT NULL,
    title            text NOT NULL,
    description      text NOT NULL,
    severity         text NOT NULL CHECK (severity IN ('info', 'low', 'medium', 'high', 'critical')),
    occurred_at      timestamptz,
    received_at      timestamptz NOT NULL,
    observables      jsonb NOT NULL,
    tags             text[] NOT NULL,
    raw              jsonb NOT NULL,
    case_id          uuid REFERENCES cases (id),
    duplicate_count  integer NOT NULL DEFAULT 0,
    last_seen_at     timestamptz NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, source, source_ref)
);
CREATE INDEX alerts_case ON alerts (case_id);

-- One row per accepted delivery (ingest receipt). A JetStream redelivery carries a receipt
-- already recorded; a second post of the same alert carries a new receipt.
CREATE TABLE alert_receipts (
    receipt_id   uuid PRIMARY KEY,
    tenant_id    text NOT NULL,
    alert_id     uuid NOT NULL REFERENCES alerts (id),
    duplicate    boolean NOT NULL,
    received_at  timestamptz NOT NULL,
    recorded_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX alert_receipts_alert ON alert_receipts (alert_id);

CREATE TABLE case_alerts (
    case_id    uuid NOT NULL REFERENCES cases (id),
    alert_id   uuid NOT NULL REFERENCES alerts (id),
    tenant_id  text NOT NULL,
    added_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (case_id, alert_id)
);

-- Append-only case timeline.
CREATE TABLE case_events (
    id          bigserial PRIMARY KEY,
    tenant_id   text NOT NULL,
    case_id     uuid NOT NULL REFERENCES cases (id),
    kind        text NOT NULL,
    actor       text NOT NULL,
    data        jsonb NOT NULL DEFAULT '{}',
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX case_events_case ON case_events (case_id, id);

CREATE TABLE runs (
    id           uuid PRIMARY KEY,
    tenant_id    text NOT NULL REFERENCES tenants (id),
    alert_id     uuid REFERENCES alerts (id),
    case_id      uuid REFERENCES cases (id),
    playbook     text NOT NULL,
    bundle_hash  text NOT NULL,
    priority     text NOT NULL,
    status       text NOT NULL DEFAULT 'queued'
                 CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'skipped', 'needs_review')),
    -- Fencing token: bumped by every claim; writes from an older claim are refused.
    epoch        integer NOT NULL DEFAULT 0,
    dispatch     integer NOT NULL DEFAULT 1,
    -- Number of claims so far (1 on the first execution).
    attempts     integer NOT NULL DEFAULT 0,
    -- A running run whose lease expired may be claimed again (its worker is presumed dead).
    lease_until  timestamptz,
    result       jsonb,
    error        text,
    traceback    text,
    queued_at    timestamptz NOT NULL DEFAULT now(),
    started_at   timestamptz,
    finished_at  timestamptz,
    updated_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX runs_alert ON runs (alert_id);
CREATE INDEX runs_tenant_status ON runs (tenant_id, status);

-- The action journal: one row per @action call, keyed by position in the run.
CREATE TABLE run_steps (
    run_id       uuid NOT NULL REFERENCES runs (id),
    seq          integer NOT NULL,
    tenant_id    text NOT NULL,
    action       text NOT NULL,
    args         jsonb NOT NULL,
    args_hash    text NOT NULL,
    idempotent   boolean NOT NULL,
    state        text NOT NULL CHECK (state IN ('intent', 'succeeded', 'failed', 'uncertain')),
    result       jsonb,
    error        text,
    attempts     integer NOT NULL DEFAULT 0,
    duration_ms  bigint,
    epoch        integer NOT NULL,
    started_at   timestamptz NOT NULL DEFAULT now(),
    finished_at  timestamptz,
    PRIMARY KEY (run_id, seq)
);

CREATE TABLE run_logs (
    id          bigserial PRIMARY KEY,
    run_id      uuid NOT NULL REFERENCES runs (id),
    tenant_id   text NOT NULL,
    level       text NOT NULL,
    message     text NOT NULL,
    fields      jsonb NOT NULL DEFAULT '{}',
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX run_logs_run ON run_logs (run_id, id);
