-- Tierless receiver, PostgreSQL schema version 9: the roll-ups learn what the counter figures
-- need (issue 18; `cloud.storage.rollups` holds the rules, `cloud.storage.windows` the reads). Per
-- series and UTC hour / day, over the usable readings (quality GOOD or UNCERTAIN with a trusted
-- timestamp, a finite value): their count, the first and last of them, whether they rise (strictly
-- increasing timestamps, values never falling), and the count of the other readings. A bucket of
-- BAD readings only gets a row with n = 0 (bucketed reads skip it). Empty sides hold identity
-- values (+-Infinity, +-2^62), so merging needs no special case. The statement trigger's function
-- is replaced to keep the new columns; the columns are built here from the readings stored.

SET LOCAL statement_timeout = 0;
-- Receivers may go on ingesting while this runs. Without this lock a batch's insert passes, its
-- trigger (the old function) waits on the roll-ups, then runs against the new columns after the
-- commit, leaving them at their defaults for good. With it, inserts wait here and their trigger
-- is the new function. Ingest waits for the whole migration (about 6 s per million readings
-- here): receivers answer 503 and gateways retry, nothing is lost.
LOCK TABLE reading IN SHARE MODE;

ALTER TABLE reading_hourly
    ADD COLUMN u_n bigint NOT NULL DEFAULT 0,
    ADD COLUMN u_first_ts_ms bigint NOT NULL DEFAULT 4611686018427387904,
    ADD COLUMN u_first_value double precision NOT NULL DEFAULT 'Infinity',
    ADD COLUMN u_last_ts_ms bigint NOT NULL DEFAULT -4611686018427387904,
    ADD COLUMN u_last_value double precision NOT NULL DEFAULT '-Infinity',
    ADD COLUMN u_rising boolean NOT NULL DEFAULT true,
    ADD COLUMN x_n bigint NOT NULL DEFAULT 0;

ALTER TABLE reading_daily
    ADD COLUMN u_n bigint NOT NULL DEFAULT 0,
    ADD COLUMN u_first_ts_ms bigint NOT NULL DEFAULT 4611686018427387904,
    ADD COLUMN u_first_value double precision NOT NULL DEFAULT 'Infinity',
    ADD COLUMN u_last_ts_ms bigint NOT NULL DEFAULT -4611686018427387904,
    ADD COLUMN u_last_value double precision NOT NULL DEFAULT '-Infinity',
    ADD COLUMN u_rising boolean NOT NULL DEFAULT true,
    ADD COLUMN x_n bigint NOT NULL DEFAULT 0;

-- The rows as they would be had the new function kept them from the start: the columns of the
-- usable readings for every bucket, and a row for every bucket of BAD readings only.
INSERT INTO reading_hourly AS r (series_id, bucket_ms, n, total, lo, hi, first_ts_ms, first_value, last_ts_ms,
        last_value, u_n, u_first_ts_ms, u_first_value, u_last_ts_ms, u_last_value, u_rising, x_n)
    SELECT series_id, b,
               count(*) FILTER (WHERE nb), coalesce(sum(value) FILTER (WHERE nb), 0),
               coalesce(min(value) FILTER (WHERE nb), 'Infinity'),
               coalesce(max(value) FILTER (WHERE nb), '-Infinity'),
               coalesce(min(ts_ms) FILTER (WHERE nb), 4611686018427387904),
               coalesce((array_agg(value ORDER BY ts_ms) FILTER (WHERE nb))[1], 0),
               coalesce(max(ts_ms) FILTER (WHERE nb), -4611686018427387904),
               coalesce((array_agg(value ORDER BY ts_ms DESC) FILTER (WHERE nb))[1], 0),
               count(*) FILTER (WHERE u),
               coalesce(min(ts_ms) FILTER (WHERE u), 4611686018427387904),
               coalesce(min(fv) FILTER (WHERE u), 'Infinity'),
               coalesce(max(ts_ms) FILTER (WHERE u), -4611686018427387904),
               coalesce(min(lv) FILTER (WHERE u), '-Infinity'),
               coalesce(bool_and(pts IS NULL OR (ts_ms > pts AND value >= pv)) FILTER (WHERE u),
                        true),
               count(*) FILTER (WHERE NOT u)
        FROM (SELECT series_id, b, ts_ms, value, nb, u,
                     lag(ts_ms) OVER w AS pts, lag(value) OVER w AS pv,
                     first_value(value) OVER w AS fv, last_value(value) OVER wa AS lv
              FROM (SELECT series_id, (ts_ms / 3600000) * 3600000 AS b, ts_ms, value,
                           (quality & 3) <> 2 AS nb,
                           quality IN (0, 1) AND value BETWEEN -1.7976931348623157e308 AND 1.7976931348623157e308 AS u
                    FROM reading) x
              WINDOW w AS (PARTITION BY series_id, b, u ORDER BY ts_ms, value),
                     wa AS (w ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING)) y
        GROUP BY series_id, b ORDER BY series_id, b
ON CONFLICT (series_id, bucket_ms) DO UPDATE SET
        u_n = excluded.u_n, u_first_ts_ms = excluded.u_first_ts_ms,
        u_first_value = excluded.u_first_value, u_last_ts_ms = excluded.u_last_ts_ms,
        u_last_value = excluded.u_last_value, u_rising = excluded.u_rising, x_n = excluded.x_n;

INSERT INTO reading_daily AS r (series_id, bucket_ms, n, total, lo, hi, first_ts_ms, first_value, last_ts_ms,
        last_value, u_n, u_first_ts_ms, u_first_value, u_last_ts_ms, u_last_value, u_rising, x_n)
    SELECT series_id, b,
               count(*) FILTER (WHERE nb), coalesce(sum(value) FILTER (WHERE nb), 0),
               coalesce(min(value) FILTER (WHERE nb), 'Infinity'),
               coalesce(max(value) FILTER (WHERE nb), '-Infinity'),
               coalesce(min(ts_ms) FILTER (WHERE nb), 4611686018427387904),
               coalesce((array_agg(value ORDER BY ts_ms) FILTER (WHERE nb))[1], 0),
               coalesce(max(ts_ms) FILTER (WHERE nb), -4611686018427387904),
               coalesce((array_agg(value ORDER BY ts_ms DESC) FILTER (WHERE nb))[1], 0),
               count(*) FILTER (WHERE u),
               coalesce(min(ts_ms) FILTER (WHERE u), 4611686018427387904),
               coalesce(min(fv) FILTER (WHERE u), 'Infinity'),
               coalesce(max(ts_ms) FILTER (WHERE u), -4611686018427387904),
               coalesce(min(lv) FILTER (WHERE u), '-Infinity'),
               coalesce(bool_and(pts IS NULL OR (ts_ms > pts AND value >= pv)) FILTER (WHERE u),
                        true),
               count(*) FILTER (WHERE NOT u)
        FROM (SELECT series_id, b, ts_ms, value, nb, u,
                     lag(ts_ms) OVER w AS pts, lag(value) OVER w AS pv,
                     first_value(value) OVER w AS fv, last_value(value) OVER wa AS lv
              FROM (SELECT series_id, (ts_ms / 86400000) * 86400000 AS b, ts_ms, value,
                           (quality & 3) <> 2 AS nb,
                           quality IN (0, 1) AND value BETWEEN -1.7976931348623157e308 AND 1.7976931348623157e308 AS u
                    FROM reading) x
              WINDOW w AS (PARTITION BY series_id, b, u ORDER BY ts_ms, value),
                     wa AS (w ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING)) y
        GROUP BY series_id, b ORDER BY series_id, b
ON CONFLICT (series_id, bucket_ms) DO UPDATE SET
        u_n = excluded.u_n, u_first_ts_ms = excluded.u_first_ts_ms,
        u_first_value = excluded.u_first_value, u_last_ts_ms = excluded.u_last_ts_ms,
        u_last_value = excluded.u_last_value, u_rising = excluded.u_rising, x_n = excluded.x_n;

-- Merge the aggregate of the statement's new readings into both roll-up tables (`Partial.merge`):
-- the hourly parts from the readings, the daily parts from the hourly ones (a day's readings
-- rise when its hours do and no hour starts below the one before), so each reading is sorted
-- once. The usable readings' first, last and rising come from one window per hour; of two
-- usable readings at one instant either may be first or last: such a bucket is not rising, and
-- the figures read a bucket that does not rise raw. Static statements: plans kept per session.
CREATE OR REPLACE FUNCTION reading_rollup() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    WITH h AS (
        SELECT series_id, b AS bucket_ms,
               count(*) FILTER (WHERE nb) AS n,
               coalesce(sum(value) FILTER (WHERE nb), 0) AS total,
               coalesce(min(value) FILTER (WHERE nb), 'Infinity') AS lo,
               coalesce(max(value) FILTER (WHERE nb), '-Infinity') AS hi,
               coalesce(min(ts_ms) FILTER (WHERE nb), 4611686018427387904) AS first_ts_ms,
               coalesce((array_agg(value ORDER BY ts_ms) FILTER (WHERE nb))[1], 0) AS first_value,
               coalesce(max(ts_ms) FILTER (WHERE nb), -4611686018427387904) AS last_ts_ms,
               coalesce((array_agg(value ORDER BY ts_ms DESC) FILTER (WHERE nb))[1], 0) AS last_value,
               count(*) FILTER (WHERE u) AS u_n,
               coalesce(min(ts_ms) FILTER (WHERE u), 4611686018427387904) AS u_first_ts_ms,
               coalesce(min(fv) FILTER (WHERE u), 'Infinity') AS u_first_value,
               coalesce(max(ts_ms) FILTER (WHERE u), -4611686018427387904) AS u_last_ts_ms,
               coalesce(min(lv) FILTER (WHERE u), '-Infinity') AS u_last_value,
               coalesce(bool_and(pts IS NULL OR (ts_ms > pts AND value >= pv)) FILTER (WHERE u),
                        true) AS u_rising,
               count(*) FILTER (WHERE NOT u) AS x_n
        FROM (SELECT series_id, b, ts_ms, value, nb, u,
                     lag(ts_ms) OVER w AS pts, lag(value) OVER w AS pv,
                     first_value(value) OVER w AS fv, last_value(value) OVER wa AS lv
              FROM (SELECT series_id, (ts_ms / 3600000) * 3600000 AS b, ts_ms, value,
                           (quality & 3) <> 2 AS nb,
                           quality IN (0, 1) AND value BETWEEN -1.7976931348623157e308 AND 1.7976931348623157e308 AS u
                    FROM new_readings) x
              WINDOW w AS (PARTITION BY series_id, b, u ORDER BY ts_ms, value),
                     wa AS (w ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING)) y
        GROUP BY series_id, b
    ), hourly AS (
        INSERT INTO reading_hourly AS r (series_id, bucket_ms, n, total, lo, hi, first_ts_ms, first_value, last_ts_ms,
        last_value, u_n, u_first_ts_ms, u_first_value, u_last_ts_ms, u_last_value, u_rising, x_n)
            SELECT * FROM h ORDER BY series_id, bucket_ms
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
                          THEN excluded.last_value ELSE r.last_value END,
        u_rising = CASE WHEN r.u_last_ts_ms < excluded.u_first_ts_ms
                        THEN r.u_rising AND excluded.u_rising
                             AND r.u_last_value <= excluded.u_first_value
                        WHEN excluded.u_last_ts_ms < r.u_first_ts_ms
                        THEN r.u_rising AND excluded.u_rising
                             AND excluded.u_last_value <= r.u_first_value
                        ELSE false END,
        u_n = r.u_n + excluded.u_n,
        x_n = r.x_n + excluded.x_n,
        u_first_ts_ms = least(r.u_first_ts_ms, excluded.u_first_ts_ms),
        u_first_value = CASE WHEN excluded.u_first_ts_ms < r.u_first_ts_ms
                             THEN excluded.u_first_value ELSE r.u_first_value END,
        u_last_ts_ms = greatest(r.u_last_ts_ms, excluded.u_last_ts_ms),
        u_last_value = CASE WHEN excluded.u_last_ts_ms > r.u_last_ts_ms
                            THEN excluded.u_last_value ELSE r.u_last_value END
    )
    INSERT INTO reading_daily AS r (series_id, bucket_ms, n, total, lo, hi, first_ts_ms, first_value, last_ts_ms,
        last_value, u_n, u_first_ts_ms, u_first_value, u_last_ts_ms, u_last_value, u_rising, x_n)
        SELECT series_id, d, sum(n), sum(total), min(lo), max(hi), min(first_ts_ms),
               (array_agg(first_value ORDER BY first_ts_ms))[1], max(last_ts_ms),
               (array_agg(last_value ORDER BY last_ts_ms DESC))[1], sum(u_n),
               min(u_first_ts_ms), (array_agg(u_first_value ORDER BY u_first_ts_ms))[1],
               max(u_last_ts_ms), (array_agg(u_last_value ORDER BY u_last_ts_ms DESC))[1],
               bool_and(u_rising AND u_first_ts_ms > pts AND u_first_value >= pv), sum(x_n)
        FROM (SELECT h.*, (bucket_ms / 86400000) * 86400000 AS d,
                     coalesce(lag(u_last_ts_ms) OVER w, -4611686018427387904) AS pts,
                     coalesce(lag(u_last_value) OVER w, '-Infinity') AS pv
              FROM h
              WINDOW w AS (PARTITION BY series_id, (bucket_ms / 86400000) * 86400000, u_n > 0
                           ORDER BY bucket_ms)) x
        GROUP BY series_id, d ORDER BY series_id, d
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
                          THEN excluded.last_value ELSE r.last_value END,
        u_rising = CASE WHEN r.u_last_ts_ms < excluded.u_first_ts_ms
                        THEN r.u_rising AND excluded.u_rising
                             AND r.u_last_value <= excluded.u_first_value
                        WHEN excluded.u_last_ts_ms < r.u_first_ts_ms
                        THEN r.u_rising AND excluded.u_rising
                             AND excluded.u_last_value <= r.u_first_value
                        ELSE false END,
        u_n = r.u_n + excluded.u_n,
        x_n = r.x_n + excluded.x_n,
        u_first_ts_ms = least(r.u_first_ts_ms, excluded.u_first_ts_ms),
        u_first_value = CASE WHEN excluded.u_first_ts_ms < r.u_first_ts_ms
                             THEN excluded.u_first_value ELSE r.u_first_value END,
        u_last_ts_ms = greatest(r.u_last_ts_ms, excluded.u_last_ts_ms),
        u_last_value = CASE WHEN excluded.u_last_ts_ms > r.u_last_ts_ms
                            THEN excluded.u_last_value ELSE r.u_last_value END;
    RETURN NULL;
END
$$;
