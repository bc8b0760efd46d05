-- Production entered by operators (cloud.storage.production): never edited, corrected by a new
-- entry that supersedes the old one, at most once.
CREATE TABLE production_entry (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    process TEXT NOT NULL,
    from_ms INTEGER NOT NULL,
    to_ms INTEGER NOT NULL,
    tonnes REAL NOT NULL,
    note TEXT NOT NULL,
    actor TEXT NOT NULL,
    entered_ms INTEGER NOT NULL,
    supersedes INTEGER REFERENCES production_entry (id)
);
CREATE UNIQUE INDEX production_entry_supersedes ON production_entry (supersedes);
CREATE INDEX production_entry_window ON production_entry (from_ms);
