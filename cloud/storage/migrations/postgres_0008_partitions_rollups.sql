-- Tierless receiver, PostgreSQL schema version 8: readings laid out for years (issue 18).
--
-- 1. `reading` becomes a table partitioned by RANGE (ts_ms), one partition per UTC calendar
--    month (`reading_pYYYYMM`), plus `reading_default` for timestamps outside every partition
--    (a gateway with a wrong clock must not fail its batch). The receiver creates partitions
--    ahead of time (`ensure_reading_partitions`, from its maintenance task,
--    `cloud.storage.maintenance`); a partition created for a range that already has rows in the
--    default partition takes those rows over, in the same transaction. Retention drops whole
--    partitions where every row in them is past its medium's retention, and deletes otherwise.
-- 2. `reading_hourly` and `reading_daily`: per series and UTC hour / day, the count, sum, min,
--    max, and the first and last reading (timestamp and value: the consumption of a counter is
--    last - first), of the readings that are not BAD (`(quality & 3) <> 2`, the same filter as
--    the bucketed reads). A statement trigger on `reading` keeps them current in the inserting
--    transaction, whatever the path (the one-statement small batch, COPY for large batches, the
--    bench's bulk path), late and out-of-order readings included: an upsert merges the new
--    readings' aggregate into the bucket's row. Concurrent batches of one series cannot race:
--    a series belongs to one device and a batch holds its device row's lock. Deleting raw
--    readings (retention) leaves the roll-ups alone: they are the long-range history.
--
-- The conversion keeps the data: the old table is renamed, its rows are copied into the
-- partitioned table (partitions created for every month that has rows; the insert builds the
-- roll-ups), and the old table is dropped, all in this migration's transaction.

-- Copying years of readings takes longer than the store's 30 s statement timeout.
SET LOCAL statement_timeout = 0;

ALTER TABLE reading RENAME TO reading_unpartitioned;
ALTER INDEX reading_series_ts RENAME TO reading_unpartitioned_series_ts;
ALTER INDEX reading_ts_brin RENAME TO reading_unpartitioned_ts_brin;

CREATE TABLE reading (LIKE reading_unpartitioned INCLUDING DEFAULTS INCLUDING CONSTRAINTS)
    PARTITION BY RANGE (ts_ms);
CREATE INDEX reading_series_ts ON reading (series_id, ts_ms);
CREATE INDEX reading_ts_brin ON reading USING brin (ts_ms) WITH (pages_per_range = 32);
CREATE TABLE reading_default PARTITION OF reading DEFAULT;

-- The UTC month that holds epoch millisecond `ms`, as [start, end) in epoch milliseconds.
CREATE FUNCTION reading_month_bounds(ms bigint, OUT start_ms bigint, OUT end_ms bigint)
LANGUAGE sql IMMUTABLE AS $$
    SELECT (extract(epoch FROM m) * 1000)::bigint,
           (extract(epoch FROM m + interval '1 month') * 1000)::bigint
    FROM (SELECT date_trunc('month', to_timestamp(ms / 1000.0) AT TIME ZONE 'UTC') AS m) t
$$;

-- Monthly partitions covering [from_ms, to_ms); those that exist are left alone. Rows of a new
-- partition's range already in `reading_default` move into it. Returns the partitions created.
-- Tables are created unqualified, in the current schema, like every migration's objects.
CREATE FUNCTION ensure_reading_partitions(p_from_ms bigint, p_to_ms bigint)
RETURNS SETOF text LANGUAGE plpgsql AS $$
DECLARE
    v_start bigint;
    v_end bigint;
    v_name text;
BEGIN
    SELECT b.start_ms INTO v_start FROM reading_month_bounds(p_from_ms) b;
    WHILE v_start < p_to_ms LOOP
        SELECT b.end_ms INTO v_end FROM reading_month_bounds(v_start) b;
        v_name := 'reading_p' || to_char(to_timestamp(v_start / 1000.0) AT TIME ZONE 'UTC',
                                         'YYYYMM');
        IF to_regclass(v_name) IS NULL THEN
            -- Not CREATE ... PARTITION OF: with rows of this range in the default partition
            -- that fails; create, fill from the default partition, then attach.
            EXECUTE format('CREATE TABLE %I (LIKE reading INCLUDING DEFAULTS INCLUDING CONSTRAINTS)',
                           v_name);
            EXECUTE format('ALTER TABLE %I ADD CONSTRAINT %I CHECK (ts_ms >= %s AND ts_ms < %s)',
                           v_name, v_name || '_range', v_start, v_end);
            EXECUTE format('WITH moved AS (DELETE FROM reading_default WHERE ts_ms >= %s'
                           ' AND ts_ms < %s RETURNING *) INSERT INTO %I SELECT * FROM moved',
                           v_start, v_end, v_name);
            EXECUTE format('ALTER TABLE reading ATTACH PARTITION %I FOR VALUES FROM (%s) TO (%s)',
                           v_name, v_start, v_end);
            -- the CHECK made the attach skip its scan; the partition bound now says the same
            EXECUTE format('ALTER TABLE %I DROP CONSTRAINT %I', v_name, v_name || '_range');
            RETURN NEXT v_name;
        END IF;
        v_start := v_end;
    END LOOP;
END
$$;

CREATE TABLE reading_hourly (
    series_id   bigint NOT NULL,
    bucket_ms   bigint NOT NULL,
    n           bigint NOT NULL,
    total       double precision NOT NULL,
    lo          double precision NOT NULL,
    hi          double precision NOT NULL,
    first_ts_ms bigint NOT NULL,
    first_value double precision NOT NULL,
    last_ts_ms  bigint NOT NULL,
    last_value  double precision NOT NULL,
    PRIMARY KEY (series_id, bucket_ms)
);
CREATE TABLE reading_daily (LIKE reading_hourly INCLUDING ALL);

-- Merge the aggregate of the statement's new readings into both roll-up tables. On a timestamp
-- tie the value already stored stays first/last: a tie is one reading sent twice.
-- Static statements (not EXECUTE): PL/pgSQL keeps their plans for the session.
CREATE FUNCTION reading_rollup() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO reading_hourly AS r (series_id, bucket_ms, n, total, lo, hi, first_ts_ms, first_value,
                              last_ts_ms, last_value)
        SELECT series_id, (ts_ms / 3600000) * 3600000 AS b, count(*), sum(value), min(value),
               max(value), min(ts_ms), (array_agg(value ORDER BY ts_ms))[1], max(ts_ms),
               (array_agg(value ORDER BY ts_ms DESC))[1]
        FROM new_readings WHERE (quality & 3) <> 2
        GROUP BY series_id, b ORDER BY series_id, b
    ON CONFLICT (series_id, bucket_ms) DO UPDATE SET
        n = r.n + excluded.n,
        total = r.total + excluded.total,
        lo = least(r.lo, excluded.lo),
        hi = greatest(r.hi, excluded.hi),
        first_ts_ms = least(r.first_ts_ms, excluded.first_ts_ms),
        first_value = CASE WHEN excluded.first_ts_ms < r.first_ts_ms
                           THEN excluded.first_value ELSE r.first_value END,
        last_ts_ms = greatest(r.last_ts_ms, excluded.last_ts_ms),
        last_value = CASE WHEN excluded.last_ts_ms > r.last_ts_ms
                          THEN excluded.last_value ELSE r.last_value END;
    INSERT INTO reading_daily AS r (series_id, bucket_ms, n, total, lo, hi, first_ts_ms, first_value,
                             last_ts_ms, last_value)
        SELECT series_id, (ts_ms / 86400000) * 86400000 AS b, count(*), sum(value), min(value),
               max(value), min(ts_ms), (array_agg(value ORDER BY ts_ms))[1], max(ts_ms),
               (array_agg(value ORDER BY ts_ms DESC))[1]
        FROM new_readings WHERE (quality & 3) <> 2
        GROUP BY series_id, b ORDER BY series_id, b
    ON CONFLICT (series_id, bucket_ms) DO UPDATE SET
        n = r.n + excluded.n,
        total = r.total + excluded.total,
        lo = least(r.lo, excluded.lo),
        hi = greatest(r.hi, excluded.hi),
        first_ts_ms = least(r.first_ts_ms, excluded.first_ts_ms),
        first_value = CASE WHEN excluded.first_ts_ms < r.first_ts_ms
                           THEN excluded.first_value ELSE r.first_value END,
        last_ts_ms = greatest(r.last_ts_ms, excluded.last_ts_ms),
        last_value = CASE WHEN excluded.last_ts_ms > r.last_ts_ms
                          THEN excluded.last_value ELSE r.last_value END;
    RETURN NULL;
END
$$;

CREATE TRIGGER reading_rollup AFTER INSERT ON reading
    REFERENCING NEW TABLE AS new_readings
    FOR EACH STATEMENT EXECUTE FUNCTION reading_rollup();

-- Move the data over: partitions for every month that has rows (the coming months are the
-- receiver's job), then the rows, whose insert builds the roll-ups through the trigger.
SELECT count(*) FROM (
    SELECT ensure_reading_partitions(min(ts_ms), max(ts_ms) + 1) FROM reading_unpartitioned
    HAVING count(*) > 0
) created;
INSERT INTO reading SELECT * FROM reading_unpartitioned;
DROP TABLE reading_unpartitioned;
