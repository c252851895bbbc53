-- Agent lifecycle: an agent can be disabled (its keys are refused, its grants kept) and enabled again.
ALTER TABLE agents ADD COLUMN disabled_ms INTEGER
