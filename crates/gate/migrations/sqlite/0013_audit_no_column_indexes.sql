-- No query reads the audit table by agent or by time: listings page through it by seq and filter on the sealed records (a plain column can be edited without breaking the chain, so filtering on it would trust what the seal does not cover). The two indexes only cost every append two more pages to write.
DROP INDEX IF EXISTS audit_agent;
DROP INDEX IF EXISTS audit_time
