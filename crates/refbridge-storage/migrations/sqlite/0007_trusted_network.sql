-- CSI's trusted network as the workers last read it from ACCloud (replaced whole by each
-- read), so that an approval for an agency outside it is refused at once.
CREATE TABLE trusted_network (
    supply_persona_id TEXT PRIMARY KEY,
    name TEXT NOT NULL
);
-- When reference data was last read from ACCloud, by what it is ('trusted_network').
CREATE TABLE reference_reads (
    what TEXT PRIMARY KEY,
    read_at TEXT NOT NULL
);
