-- Version 1 of the connectord schema.
--
-- Each table keeps the record exactly as the sled store encodes it (a format-version byte,
-- the revision, then a protobuf message; see src/store/record.rs) in `record`, plus the
-- columns that keys, revision checks, uniqueness rules and ordered scans need. Those columns
-- are derived from the record on every write. Ids use the "C" collation, so text order is
-- byte order, as in sled. Times are Unix nanoseconds, as in the records.

CREATE TABLE connectors (
    app_id          text COLLATE "C" NOT NULL,
    id              text COLLATE "C" NOT NULL,
    revision        bigint NOT NULL,
    deleted         boolean NOT NULL,
    -- Next scheduled run; NULL for deleted or unscheduled connectors.
    next_run_at_ns  bigint,
    record          bytea NOT NULL,
    CONSTRAINT connectors_pkey PRIMARY KEY (app_id, id)
);

-- Keyset pages of an app's live connectors in id order.
CREATE INDEX connectors_live ON connectors (app_id, id) WHERE NOT deleted;
-- The scheduler's scan for runs that are due.
CREATE INDEX connectors_next_run ON connectors (next_run_at_ns) WHERE next_run_at_ns IS NOT NULL;

-- Request ids of Create calls, per app, kept for a retention period.
CREATE TABLE connector_request_ids (
    app_id          text COLLATE "C" NOT NULL,
    request_id      text COLLATE "C" NOT NULL,
    connector_id    text COLLATE "C" NOT NULL,
    recorded_at_ns  bigint NOT NULL,
    CONSTRAINT connector_request_ids_pkey PRIMARY KEY (app_id, request_id)
);

CREATE INDEX connector_request_ids_recorded ON connector_request_ids (recorded_at_ns);

CREATE TABLE syncs (
    app_id              text COLLATE "C" NOT NULL,
    connector_id        text COLLATE "C" NOT NULL,
    id                  text COLLATE "C" NOT NULL,
    revision            bigint NOT NULL,
    -- 1 pending, 2 running, 3 done, 4 error, 5 cancelled.
    state               smallint NOT NULL,
    -- Lease end of a running sync; NULL in every other state.
    lease_expires_at_ns bigint,
    -- Request id of the ForceSync that queued the sync.
    request_id          text COLLATE "C",
    record              bytea NOT NULL,
    CONSTRAINT syncs_pkey PRIMARY KEY (app_id, connector_id, id),
    CONSTRAINT syncs_request_id_key UNIQUE (app_id, connector_id, request_id)
);

-- At most one pending sync per connector.
CREATE UNIQUE INDEX syncs_one_pending ON syncs (app_id, connector_id) WHERE state = 1;
-- Keyset pages of a connector's syncs in one state, newest first.
CREATE INDEX syncs_by_state ON syncs (app_id, connector_id, state, id);
-- The lease sweep's scan for running syncs whose lease has ended.
CREATE INDEX syncs_lease_end ON syncs (lease_expires_at_ns) WHERE lease_expires_at_ns IS NOT NULL;

CREATE TABLE credentials (
    app_id          text COLLATE "C" NOT NULL,
    connector_id    text COLLATE "C" NOT NULL,
    id              text COLLATE "C" NOT NULL,
    revision        bigint NOT NULL,
    client_id       text COLLATE "C" NOT NULL,
    record          bytea NOT NULL,
    CONSTRAINT credentials_pkey PRIMARY KEY (app_id, connector_id, id),
    CONSTRAINT credentials_client_id_key UNIQUE (client_id)
);
