-- Undecided subjects by how long their status has lasted: the dashboard's "stuck longest".
-- Partial: only subjects not approved or rejected are in it, so decided ones cost nothing.
CREATE INDEX subjects_open ON subjects (status_at) WHERE status NOT IN ('approved', 'rejected');
