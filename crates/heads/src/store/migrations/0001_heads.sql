-- polyhead head store, schema 1: tasks with their active pointer and history, and
-- immutable versions holding the artifact's two files byte for byte.
CREATE TABLE polyhead_task (
    name       text PRIMARY KEY,
    -- The active version; 0 = none active.
    active     bigint NOT NULL DEFAULT 0,
    -- Versions active before, oldest first (for rollback).
    previous   bigint[] NOT NULL DEFAULT '{}',
    changed_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE polyhead_version (
    task       text NOT NULL REFERENCES polyhead_task (name) ON DELETE CASCADE,
    version    bigint NOT NULL CHECK (version > 0),
    -- manifest.json and head.safetensors, exactly as written.
    manifest   bytea NOT NULL,
    weights    bytea NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (task, version)
);
