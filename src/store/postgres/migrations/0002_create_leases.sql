-- Version 2: named leases that replicas take turns holding, such as the one of the timers
-- that expire sync leases and queue scheduled syncs. Expiry times come from the database
-- clock, so the replicas' clocks need not agree.

CREATE TABLE leases (
    name        text COLLATE "C" NOT NULL,
    holder      text NOT NULL,
    expires_at  timestamptz NOT NULL,
    CONSTRAINT leases_pkey PRIMARY KEY (name)
);
