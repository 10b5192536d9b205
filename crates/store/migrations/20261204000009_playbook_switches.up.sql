-- Enabling or disabling a playbook (API / CLI) is a per-tenant switch by playbook name that
-- outlives deployments: a playbook disabled by an analyst stays disabled when a new bundle
-- is deployed. Without a switch, the `enabled` the bundle declares applies.
CREATE TABLE playbook_switches (
    tenant_id   text NOT NULL REFERENCES tenants (id),
    name        text NOT NULL,
    enabled     boolean NOT NULL,
    changed_by  text NOT NULL,
    changed_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, name)
);
