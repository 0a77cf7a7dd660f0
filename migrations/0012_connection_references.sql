-- References that no foreign key declares, declared once per connection (CHILD.COLUMN=PARENT.COLUMN):
-- tenant restores, copies, merges and imports follow them like foreign keys.
ALTER TABLE connections ADD COLUMN declared_references TEXT NOT NULL DEFAULT '[]';
