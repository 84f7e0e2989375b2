"""psycopg 3 through txlane: auto-prepared statements on whichever lane runs
them, and psycopg's own DEALLOCATE ALL after DDL.

Usage: python3 psycopg_lanes.py DSN TABLE. Prints one JSON object: what each
step returned and which backend ran it (pg_backend_pid()).
"""
import json
import sys

import psycopg

dsn, table = sys.argv[1], sys.argv[2]
out = {}
# prepare_threshold=0: psycopg prepares every query the first time it runs it
# (Parse of a named _pg3_N statement, then Bind/Execute).
with psycopg.connect(dsn, prepare_threshold=0, autocommit=True) as conn:
    out["primary_pid"] = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
    read = f"SELECT pg_backend_pid(), id FROM {table} ORDER BY embedding <-> %s::vector LIMIT 1"
    out["reads"] = [list(conn.execute(read, ("[1,0,0]",)).fetchone()) for _ in range(3)]
    out["prepared_names"] = sorted(conn.execute(
        "SELECT name FROM pg_prepared_statements").fetchall())  # the primary's, as psycopg sees them
    # DDL: psycopg deallocates all its prepared statements afterwards.
    conn.execute(f"ALTER TABLE {table} ADD COLUMN extra int DEFAULT 7")
    row = conn.execute(f"SELECT pg_backend_pid(), * FROM {table} WHERE id = %s", (1,)).fetchone()
    out["after_ddl_columns"] = len(row) - 1
    out["after_ddl_extra"] = row[-1]
    # A transaction that writes the table reads its own write on the primary.
    with conn.transaction():
        conn.execute(f"INSERT INTO {table} (id, embedding) VALUES (%s, %s::vector)", (100, "[1,0,0]"))
        out["in_tx_read"] = list(conn.execute(read, ("[1,0,0]",)).fetchone())
        out["in_tx_count"] = conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
        raise psycopg.Rollback()
    out["after_rollback_count"] = conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
print(json.dumps(out))
