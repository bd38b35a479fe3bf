-- Most subjects carry no external_id: index only those that do. Every index is a row
-- written on every insert (D1's meter), and the only query on this index asks for one value
-- (`external_id = ?`), which SQLite answers from a partial index that excludes NULLs.
DROP INDEX subjects_by_external_id;
CREATE INDEX subjects_by_external_id ON subjects (external_id) WHERE external_id IS NOT NULL;
