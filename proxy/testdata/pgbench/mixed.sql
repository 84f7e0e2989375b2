-- A mixed workload for pgbench through txlane (see pgbench_test.go, which
-- replaces {{accounts}} and {{logs}} with tables private to the test run).
--
-- {{accounts}} is a business table (no vector column); {{logs}} is an
-- optimization_logs-style vector table on the vector lane. Each transaction
-- writes an account and reads the logs (a vector read inside the transaction:
-- it may go to the vector lane, since the transaction wrote only the
-- accounts), then reads its own write back (primary). Then two idle vector
-- reads, one with a vector built from a variable.
\set aid random(1, 100)
\set delta random(-50, 50)
\set lid random(1, 200)
\set d random(1, 9)
BEGIN;
UPDATE {{accounts}} SET balance = balance + :delta WHERE id = :aid;
SELECT id, score FROM {{logs}} ORDER BY embedding <-> '[0.5,0.5,0.5]' LIMIT 5;
SELECT balance FROM {{accounts}} WHERE id = :aid;
COMMIT;
SELECT id, score FROM {{logs}} WHERE id <> :lid ORDER BY embedding <-> '[0.1,0.9,0.3]' LIMIT 5;
SELECT id FROM {{logs}} ORDER BY embedding <-> ('[0.' || :d || ',0.5,0.5]')::vector LIMIT 5;
