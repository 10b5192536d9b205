-- Case management: per-tenant grouping policies (versioned), grouping state on cases,
-- assignees, observables stored once per tenant and linked to alerts and cases, and the
-- keyset indexes the list endpoints page through.

-- A new row per change; the highest version of a tenant applies. No row: the defaults.
CREATE TABLE grouping_policies (
    tenant_id               text NOT NULL REFERENCES tenants (id),
    version                 integer NOT NULL CHECK (version > 0),
    -- Fingerprint fields, e.g. {source, title, observable:host|user|ip}.
    fields                  text[] NOT NULL CHECK (cardinality(fields) > 0),
    window_secs             integer NOT NULL CHECK (window_secs > 0),
    max_group_size          integer NOT NULL CHECK (max_group_size > 0),
    -- Whether alerts joining an existing case start playbook runs too.
    grouped_alerts_trigger  boolean NOT NULL,
    created_by              text NOT NULL,
    created_at              timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, version)
);

ALTER TABLE cases ADD COLUMN assignee text;
-- Grouping state: the fingerprint of the alert that opened the case, when that alert was
-- received (the window counts from it), and how many alerts the case holds.
ALTER TABLE cases ADD COLUMN fingerprint text;
ALTER TABLE cases ADD COLUMN first_alert_at timestamptz;
ALTER TABLE cases ADD COLUMN alert_count integer NOT NULL DEFAULT 0;
UPDATE cases c SET first_alert_at = c.created_at,
    alert_count = (SELECT count(*) FROM case_alerts ca WHERE ca.case_id = c.id);
CREATE INDEX cases_open_fingerprint ON cases (tenant_id, fingerprint, first_alert_at DESC)
    WHERE status IN ('new', 'in_progress');
DROP INDEX cases_tenant;
CREATE INDEX cases_tenant ON cases (tenant_id, created_at DESC, id DESC);

ALTER TABLE alerts ADD COLUMN fingerprint text;
CREATE INDEX alerts_tenant ON alerts (tenant_id, created_at DESC, id DESC);
CREATE INDEX runs_tenant ON runs (tenant_id, queued_at DESC, id DESC);
CREATE INDEX case_alerts_alert ON case_alerts (alert_id);

CREATE TABLE observables (
    id          uuid PRIMARY KEY,
    tenant_id   text NOT NULL REFERENCES tenants (id),
    type        text NOT NULL
                CHECK (type IN ('ip', 'domain', 'url', 'hash', 'email', 'user', 'host')),
    value       text NOT NULL,
    first_seen  timestamptz NOT NULL DEFAULT now(),
    last_seen   timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, type, value)
);
CREATE INDEX observables_tenant ON observables (tenant_id, first_seen DESC, id DESC);

CREATE TABLE alert_observables (
    alert_id       uuid NOT NULL REFERENCES alerts (id),
    observable_id  uuid NOT NULL REFERENCES observables (id),
    tenant_id      text NOT NULL,
    PRIMARY KEY (alert_id, observable_id)
);
CREATE INDEX alert_observables_observable ON alert_observables (observable_id);

CREATE TABLE case_observables (
    case_id        uuid NOT NULL REFERENCES cases (id),
    observable_id  uuid NOT NULL REFERENCES observables (id),
    tenant_id      text NOT NULL,
    added_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (case_id, observable_id)
);
CREATE INDEX case_observables_observable ON case_observables (observable_id);
