-- polyhead head store, schema 2: the highest version a deleted task had, so a task
-- created again under the same name never reuses a number (a replica that missed the
-- notification would take the new head for the one it serves).
CREATE TABLE polyhead_retired (
    task         text PRIMARY KEY,
    last_version bigint NOT NULL
);
