-- Tierless receiver, SQLite schema version 6: hourly and daily roll-ups of the readings
-- (issue 18; `cloud.storage.rollups` holds the rules). Per series and UTC hour / day: count,
-- sum, min, max, and the first and last reading, of the readings that are not BAD. The store
-- merges each insert's aggregate in the same transaction, from Python (no statement triggers in
-- SQLite). Built here once from the readings already stored.
CREATE TABLE reading_hourly (
    series_id   INTEGER NOT NULL,
    bucket_ms   INTEGER NOT NULL,
    n           INTEGER NOT NULL,
    total       REAL NOT NULL,
    lo          REAL NOT NULL,
    hi          REAL NOT NULL,
    first_ts_ms INTEGER NOT NULL,
    first_value REAL NOT NULL,
    last_ts_ms  INTEGER NOT NULL,
    last_value  REAL NOT NULL,
    PRIMARY KEY (series_id, bucket_ms)
) WITHOUT ROWID;

CREATE TABLE reading_daily (
    series_id   INTEGER NOT NULL,
    bucket_ms   INTEGER NOT NULL,
    n           INTEGER NOT NULL,
    total       REAL NOT NULL,
    lo          REAL NOT NULL,
    hi          REAL NOT NULL,
    first_ts_ms INTEGER NOT NULL,
    first_value REAL NOT NULL,
    last_ts_ms  INTEGER NOT NULL,
    last_value  REAL NOT NULL,
    PRIMARY KEY (series_id, bucket_ms)
) WITHOUT ROWID;

-- first/last: the value of the reading at the bucket's smallest / largest timestamp (one index
-- probe each on reading (series_id, ts_ms)).
INSERT INTO reading_hourly
    SELECT series_id, (ts_ms / 3600000) * 3600000 AS b, count(*), sum(value), min(value),
           max(value), min(ts_ms), 0, max(ts_ms), 0
    FROM reading WHERE (quality & 3) <> 2 GROUP BY series_id, b;
INSERT INTO reading_daily
    SELECT series_id, (ts_ms / 86400000) * 86400000 AS b, count(*), sum(value), min(value),
           max(value), min(ts_ms), 0, max(ts_ms), 0
    FROM reading WHERE (quality & 3) <> 2 GROUP BY series_id, b;
UPDATE reading_hourly SET
    first_value = (SELECT value FROM reading r WHERE r.series_id = reading_hourly.series_id
                   AND r.ts_ms = reading_hourly.first_ts_ms AND (r.quality & 3) <> 2 LIMIT 1),
    last_value = (SELECT value FROM reading r WHERE r.series_id = reading_hourly.series_id
                  AND r.ts_ms = reading_hourly.last_ts_ms AND (r.quality & 3) <> 2 LIMIT 1);
UPDATE reading_daily SET
    first_value = (SELECT value FROM reading r WHERE r.series_id = reading_daily.series_id
                   AND r.ts_ms = reading_daily.first_ts_ms AND (r.quality & 3) <> 2 LIMIT 1),
    last_value = (SELECT value FROM reading r WHERE r.series_id = reading_daily.series_id
                  AND r.ts_ms = reading_daily.last_ts_ms AND (r.quality & 3) <> 2 LIMIT 1);
