-- Production entered by operators (cloud.storage.production): never edited, corrected by a new
-- entry that supersedes the old one, at most once.
CREATE TABLE production_entry (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    process TEXT NOT NULL,
    from_ms BIGINT NOT NULL,
    to_ms BIGINT NOT NULL,
    tonnes DOUBLE PRECISION NOT NULL,
    note TEXT NOT NULL,
    actor TEXT NOT NULL,
    entered_ms BIGINT NOT NULL,
    supersedes BIGINT REFERENCES production_entry (id)
);
CREATE UNIQUE INDEX production_entry_supersedes ON production_entry (supersedes);
CREATE INDEX production_entry_window ON production_entry (from_ms);
