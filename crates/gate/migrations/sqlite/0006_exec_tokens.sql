-- Tokens made by `jgate exec` for one run of a command: valid only through the Jenkins proxy (scope proxy), never on MCP.
ALTER TABLE agent_keys ADD COLUMN scope TEXT NOT NULL DEFAULT 'all'
