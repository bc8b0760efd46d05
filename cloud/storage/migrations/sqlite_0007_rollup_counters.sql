-- Tierless receiver, SQLite schema version 7: the roll-ups learn what the counter figures need
-- (issue 18; `cloud.storage.rollups` holds the rules, `cloud.storage.windows` the reads). Per
-- series and UTC hour / day, over the usable readings (quality GOOD or UNCERTAIN with a trusted
-- timestamp, a finite value): their count, the first and last of them, whether they rise (strictly
-- increasing timestamps, values never falling), and the count of the other readings. A bucket of
-- BAD readings only gets a row with n = 0 (bucketed reads skip it). Empty sides hold identity
-- values (+-inf, +-2^62), so merging needs no special case. Built here from the readings stored.

ALTER TABLE reading_hourly ADD COLUMN u_n INTEGER NOT NULL DEFAULT 0;
ALTER TABLE reading_hourly ADD COLUMN u_first_ts_ms INTEGER NOT NULL DEFAULT 4611686018427387904;
ALTER TABLE reading_hourly ADD COLUMN u_first_value REAL NOT NULL DEFAULT 9e999;
ALTER TABLE reading_hourly ADD COLUMN u_last_ts_ms INTEGER NOT NULL DEFAULT -4611686018427387904;
ALTER TABLE reading_hourly ADD COLUMN u_last_value REAL NOT NULL DEFAULT -9e999;
ALTER TABLE reading_hourly ADD COLUMN u_rising INTEGER NOT NULL DEFAULT 1;
ALTER TABLE reading_hourly ADD COLUMN x_n INTEGER NOT NULL DEFAULT 0;

-- counts and timestamps per bucket; a bucket of BAD readings only gets its row here
INSERT INTO reading_hourly AS r (series_id, bucket_ms, n, total, lo, hi, first_ts_ms, first_value,
                          last_ts_ms, last_value, u_n, u_first_ts_ms, u_last_ts_ms, x_n)
    SELECT series_id, (ts_ms / 3600000) * 3600000 AS b, 0, 0.0, 9e999, -9e999,
           4611686018427387904, 0.0, -4611686018427387904, 0.0, sum(u),
           coalesce(min(CASE WHEN u THEN ts_ms END), 4611686018427387904),
           coalesce(max(CASE WHEN u THEN ts_ms END), -4611686018427387904), sum(1 - u)
    FROM (SELECT series_id, ts_ms, (quality IN (0, 1)
                 AND value BETWEEN -1.7976931348623157e308 AND 1.7976931348623157e308) AS u
          FROM reading)
    WHERE true GROUP BY series_id, b
    ON CONFLICT (series_id, bucket_ms) DO UPDATE SET u_n = excluded.u_n,
        u_first_ts_ms = excluded.u_first_ts_ms, u_last_ts_ms = excluded.u_last_ts_ms,
        x_n = excluded.x_n;
-- the values at those timestamps (of a tie, the largest: a tie is not rising anyway)
UPDATE reading_hourly SET
    u_first_value = (SELECT max(value) FROM reading x WHERE x.series_id = reading_hourly.series_id
                     AND x.ts_ms = reading_hourly.u_first_ts_ms AND x.quality IN (0, 1)
                     AND x.value BETWEEN -1.7976931348623157e308 AND 1.7976931348623157e308),
    u_last_value = (SELECT max(value) FROM reading x WHERE x.series_id = reading_hourly.series_id
                    AND x.ts_ms = reading_hourly.u_last_ts_ms AND x.quality IN (0, 1)
                    AND x.value BETWEEN -1.7976931348623157e308 AND 1.7976931348623157e308)
    WHERE u_n > 0;
-- not rising: a usable reading at the same instant as, or below, the one before it
UPDATE reading_hourly SET u_rising = 0 WHERE (series_id, bucket_ms) IN (
    SELECT series_id, b FROM (
        SELECT series_id, (ts_ms / 3600000) * 3600000 AS b, ts_ms, value,
               lag(ts_ms) OVER w AS pts, lag(value) OVER w AS pv
        FROM reading
        WHERE quality IN (0, 1)
          AND value BETWEEN -1.7976931348623157e308 AND 1.7976931348623157e308
        WINDOW w AS (PARTITION BY series_id, (ts_ms / 3600000) * 3600000 ORDER BY ts_ms))
    WHERE ts_ms = pts OR value < pv);

ALTER TABLE reading_daily ADD COLUMN u_n INTEGER NOT NULL DEFAULT 0;
ALTER TABLE reading_daily ADD COLUMN u_first_ts_ms INTEGER NOT NULL DEFAULT 4611686018427387904;
ALTER TABLE reading_daily ADD COLUMN u_first_value REAL NOT NULL DEFAULT 9e999;
ALTER TABLE reading_daily ADD COLUMN u_last_ts_ms INTEGER NOT NULL DEFAULT -4611686018427387904;
ALTER TABLE reading_daily ADD COLUMN u_last_value REAL NOT NULL DEFAULT -9e999;
ALTER TABLE reading_daily ADD COLUMN u_rising INTEGER NOT NULL DEFAULT 1;
ALTER TABLE reading_daily ADD COLUMN x_n INTEGER NOT NULL DEFAULT 0;

-- counts and timestamps per bucket; a bucket of BAD readings only gets its row here
INSERT INTO reading_daily AS r (series_id, bucket_ms, n, total, lo, hi, first_ts_ms, first_value,
                          last_ts_ms, last_value, u_n, u_first_ts_ms, u_last_ts_ms, x_n)
    SELECT series_id, (ts_ms / 86400000) * 86400000 AS b, 0, 0.0, 9e999, -9e999,
           4611686018427387904, 0.0, -4611686018427387904, 0.0, sum(u),
           coalesce(min(CASE WHEN u THEN ts_ms END), 4611686018427387904),
           coalesce(max(CASE WHEN u THEN ts_ms END), -4611686018427387904), sum(1 - u)
    FROM (SELECT series_id, ts_ms, (quality IN (0, 1)
                 AND value BETWEEN -1.7976931348623157e308 AND 1.7976931348623157e308) AS u
          FROM reading)
    WHERE true GROUP BY series_id, b
    ON CONFLICT (series_id, bucket_ms) DO UPDATE SET u_n = excluded.u_n,
        u_first_ts_ms = excluded.u_first_ts_ms, u_last_ts_ms = excluded.u_last_ts_ms,
        x_n = excluded.x_n;
-- the values at those timestamps (of a tie, the largest: a tie is not rising anyway)
UPDATE reading_daily SET
    u_first_value = (SELECT max(value) FROM reading x WHERE x.series_id = reading_daily.series_id
                     AND x.ts_ms = reading_daily.u_first_ts_ms AND x.quality IN (0, 1)
                     AND x.value BETWEEN -1.7976931348623157e308 AND 1.7976931348623157e308),
    u_last_value = (SELECT max(value) FROM reading x WHERE x.series_id = reading_daily.series_id
                    AND x.ts_ms = reading_daily.u_last_ts_ms AND x.quality IN (0, 1)
                    AND x.value BETWEEN -1.7976931348623157e308 AND 1.7976931348623157e308)
    WHERE u_n > 0;
-- not rising: a usable reading at the same instant as, or below, the one before it
UPDATE reading_daily SET u_rising = 0 WHERE (series_id, bucket_ms) IN (
    SELECT series_id, b FROM (
        SELECT series_id, (ts_ms / 86400000) * 86400000 AS b, ts_ms, value,
               lag(ts_ms) OVER w AS pts, lag(value) OVER w AS pv
        FROM reading
        WHERE quality IN (0, 1)
          AND value BETWEEN -1.7976931348623157e308 AND 1.7976931348623157e308
        WINDOW w AS (PARTITION BY series_id, (ts_ms / 86400000) * 86400000 ORDER BY ts_ms))
    WHERE ts_ms = pts OR value < pv);
