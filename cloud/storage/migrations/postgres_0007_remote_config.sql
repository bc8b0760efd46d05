-- Tierless receiver, PostgreSQL schema version 7 (issue 15): provenance and remote configuration.
--
-- Provenance: every batch record keeps the agent config version that produced it (the batch's
-- optional tenth element; '' when the agent did not say) and the time range of its readings and
-- events, so a reading can be traced to the config that read it (GET /v1/devices/{id}/batches).
-- `ingest_batch` (version 3) gains three parameters for them and is otherwise unchanged; the old
-- signature is dropped so that a call can never reach it.
ALTER TABLE batch
    ADD COLUMN config_version text NOT NULL DEFAULT '',
    ADD COLUMN min_ts_ms bigint,
    ADD COLUMN max_ts_ms bigint;

DROP FUNCTION ingest_batch(
    text, bigint, bytea, bytea, text, bigint, bigint, text, integer, text, bigint, bigint, bigint,
    smallint, bigint, bigint, bigint[], text[], text[], text[], text[], text[], text[],
    integer[], bigint[], double precision[], smallint[], text[], bigint[], smallint[], jsonb[]
);

CREATE FUNCTION ingest_batch(
    p_device_id text,
    p_seq bigint,
    p_digest bytea,
    p_prev bytea,
    p_keyid text,
    p_sig_created bigint,
    p_received_ms bigint,
    p_content_encoding text,
    p_wire_bytes integer,
    p_boot_id text,
    p_dropped_buffer_full bigint,
    p_dropped_damaged bigint,
    p_rejected_invalid bigint,
    p_clock_state smallint,
    p_clock_offset_ms bigint,
    p_created_skew_ms bigint,
    -- one element per series: the id if the caller knows it (else NULL), and the key
    p_series_ids bigint[],
    p_metric text[],
    p_unit text[],
    p_site text[],
    p_area text[],
    p_process text[],
    p_medium text[],
    -- one element per reading: its series as a 1-based index into the series arrays
    p_reading_series integer[],
    p_ts_ms bigint[],
    p_value double precision[],
    p_quality smallint[],
    -- one element per event
    p_event_kind text[],
    p_event_ts_ms bigint[],
    p_event_quality smallint[],
    p_event_attrs jsonb[],
    -- provenance (version 7): the config that produced the batch, its readings' time range
    p_config_version text,
    p_min_ts_ms bigint,
    p_max_ts_ms bigint,
    OUT outcome text,
    OUT expected_seq bigint,
    OUT reason text,
    OUT series_ids bigint[]
) LANGUAGE plpgsql AS $$
DECLARE
    v_head_seq bigint;
    v_head_digest bytea;
    v_device_status text;
    v_key_status text;
    v_not_after bigint;
    v_stored bytea;
    v_kind text;
    v_sid bigint;
    v_ids bigint[] := p_series_ids;
    v_readings integer := coalesce(cardinality(p_ts_ms), 0);
    v_events integer := coalesce(cardinality(p_event_kind), 0);
BEGIN
    reason := '';
    SELECT d.head_seq, d.head_digest, d.status, k.status, k.not_after_ms
        INTO v_head_seq, v_head_digest, v_device_status, v_key_status, v_not_after
        FROM device d LEFT JOIN device_key k ON k.keyid = p_keyid AND k.device_id = d.id
        WHERE d.id = p_device_id FOR UPDATE OF d;
    IF NOT FOUND THEN
        outcome := 'unknown_device';
        RETURN;
    END IF;
    expected_seq := v_head_seq + 1;

    -- The key may have been revoked, or the device disabled, since the request was
    -- authenticated: `cloud.storage.devices.key_usable`, at p_received_ms.
    IF v_key_status IS NOT NULL AND NOT (
        v_device_status = 'active'
        AND (v_key_status = 'active'
             OR (v_key_status = 'retiring' AND v_not_after IS NOT NULL
                 AND p_received_ms < v_not_after))
    ) THEN
        outcome := 'key_refused';
        RETURN;
    END IF;

    IF p_seq <= v_head_seq THEN
        SELECT b.digest INTO v_stored FROM batch b WHERE b.device_id = p_device_id AND b.seq = p_seq;
        IF v_stored IS NOT NULL AND v_stored = p_digest THEN
            outcome := 'duplicate';
            RETURN;
        END IF;
        outcome := 'chain_conflict';
        reason := 'digest_mismatch';
        v_kind := 'fork';
    ELSIF p_seq > expected_seq THEN
        outcome := 'seq_gap';
        reason := 'gap';
        v_kind := 'gap';
    ELSIF p_prev <> v_head_digest THEN
        outcome := 'chain_conflict';
        reason := 'prev_mismatch';
        v_kind := 'fork';
    END IF;

    IF v_kind IS NOT NULL THEN
        INSERT INTO chain_event (device_id, kind, seq, expected_seq, digest, reason, at_ms)
            VALUES (p_device_id, v_kind, p_seq, expected_seq, p_digest, reason, p_received_ms)
            ON CONFLICT DO NOTHING;
        IF FOUND THEN
            IF v_kind = 'gap' THEN
                UPDATE device SET gaps = gaps + 1 WHERE id = p_device_id;
            ELSE
                UPDATE device SET forks = forks + 1 WHERE id = p_device_id;
            END IF;
        END IF;
        RETURN;
    END IF;

    FOR i IN 1 .. coalesce(cardinality(v_ids), 0) LOOP
        IF v_ids[i] IS NULL THEN
            INSERT INTO series (device_id, metric, unit, site, area, process, medium)
                VALUES (p_device_id, p_metric[i], p_unit[i], p_site[i], p_area[i], p_process[i],
                        p_medium[i])
                ON CONFLICT DO NOTHING RETURNING id INTO v_sid;
            IF v_sid IS NULL THEN
                SELECT s.id INTO STRICT v_sid FROM series s
                    WHERE s.device_id = p_device_id AND s.metric = p_metric[i]
                      AND s.unit = p_unit[i] AND s.site = p_site[i] AND s.area = p_area[i]
                      AND s.process = p_process[i] AND s.medium = p_medium[i];
            END IF;
            v_ids[i] := v_sid;
        END IF;
    END LOOP;

    INSERT INTO batch (device_id, seq, digest, prev, keyid, sig_created, received_ms,
                       content_encoding, wire_bytes, boot_id, reading_count, event_count,
                       config_version, min_ts_ms, max_ts_ms)
        VALUES (p_device_id, p_seq, p_digest, p_prev, p_keyid, p_sig_created, p_received_ms,
                p_content_encoding, p_wire_bytes, p_boot_id, v_readings, v_events,
                p_config_version, p_min_ts_ms, p_max_ts_ms);
    IF v_readings > 0 THEN
        INSERT INTO reading (series_id, ts_ms, value, quality)
            SELECT v_ids[r.i], r.t, r.v, r.q
            FROM unnest(p_reading_series, p_ts_ms, p_value, p_quality) AS r (i, t, v, q);
    END IF;
    IF v_events > 0 THEN
        INSERT INTO event (device_id, seq, kind, ts_ms, quality, attrs)
            SELECT p_device_id, p_seq, e.k, e.t, e.q, e.a
            FROM unnest(p_event_kind, p_event_ts_ms, p_event_quality, p_event_attrs)
                WITH ORDINALITY AS e (k, t, q, a, n)
            ORDER BY e.n;
    END IF;
    UPDATE device SET head_seq = p_seq, head_digest = p_digest, last_seen_ms = p_received_ms,
                      last_boot_id = p_boot_id, batches = batches + 1,
                      readings = readings + v_readings,
                      dropped_buffer_full = dropped_buffer_full + p_dropped_buffer_full,
                      dropped_damaged = dropped_damaged + p_dropped_damaged,
                      rejected_invalid = rejected_invalid + p_rejected_invalid,
                      clock_state = p_clock_state, clock_offset_ms = p_clock_offset_ms,
                      created_skew_ms = p_created_skew_ms
        WHERE id = p_device_id;
    outcome := 'stored';
    expected_seq := p_seq + 1;
    series_ids := v_ids;
END
$$;

-- Remote configuration (cloud.storage.configs): every config pushed to a device, versioned per
-- device and signed at push time, and the audit of every push (who, when, what, to whom).
CREATE TABLE device_config (
    device_id   text NOT NULL REFERENCES device (id),
    version     bigint NOT NULL CHECK (version > 0),
    sha256      text NOT NULL,
    body        bytea NOT NULL,
    signature   text NOT NULL,
    pushed_ms   bigint NOT NULL,
    pushed_by   text NOT NULL,
    PRIMARY KEY (device_id, version)
);
CREATE TABLE config_audit (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at_ms       bigint NOT NULL,
    actor       text NOT NULL,
    target      text NOT NULL,
    sha256      text NOT NULL,
    devices     integer NOT NULL
);
