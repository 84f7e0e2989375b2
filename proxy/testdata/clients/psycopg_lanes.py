"""psycopg 3 through txlane: auto-prepared statements on whichever lane runs
them, psycopg's own DEALLOCATE ALL after DDL, and session state that stays a
client's own while a second client, interleaved between its steps, does the
same things with other values (in pool_mode transaction with pool_size 1 the
two share one backend: what each set must follow it there).

Usage: python3 psycopg_lanes.py DSN TABLE. Prints one JSON object: what each
step returned and which backend ran it (pg_backend_pid()).
"""
import json
import sys

import psycopg

dsn, table = sys.argv[1], sys.argv[2]
out = {}
STATE = ("SELECT current_setting('TimeZone'), current_setting('search_path'), "
         "current_setting('app.who', true), pg_backend_pid()")
# prepare_threshold=0: psycopg prepares every query the first time it runs it
# (Parse of a named _pg3_N statement, then Bind/Execute). Both clients name
# their statements _pg3_0, _pg3_1, ... for different queries.
with psycopg.connect(dsn, prepare_threshold=0, autocommit=True) as conn, \
        psycopg.connect(dsn, prepare_threshold=0, autocommit=True) as other:
    n = [0]

    def interleave():
        """The other client, between two steps of conn: statements of its
        own under conn's statement names, settings of its own."""
        n[0] += 1
        other.execute("SELECT %s::int + 1", (n[0],)).fetchone()
        other.execute("SELECT set_config('app.who', 'other', false)")
        other.execute("SET TIME ZONE 'UTC'")
        other.execute("SET search_path = pg_catalog, public")

    conn.execute("SET TIME ZONE 'Asia/Tokyo'")
    conn.execute("SELECT set_config('app.who', 'conn', false)")
    interleave()
    out["primary_pid"] = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
    interleave()
    read = f"SELECT pg_backend_pid(), id FROM {table} ORDER BY embedding <-> %s::vector LIMIT 1"
    out["reads"] = []
    for _ in range(3):
        out["reads"].append(list(conn.execute(read, ("[1,0,0]",)).fetchone()))
        interleave()
    out["prepared_names"] = sorted(conn.execute(
        "SELECT name FROM pg_prepared_statements").fetchall())  # the primary's, as psycopg sees them
    # DDL: psycopg deallocates all its prepared statements afterwards.
    conn.execute(f"ALTER TABLE {table} ADD COLUMN extra int DEFAULT 7")
    interleave()
    row = conn.execute(f"SELECT pg_backend_pid(), * FROM {table} WHERE id = %s", (1,)).fetchone()
    out["after_ddl_columns"] = len(row) - 1
    out["after_ddl_extra"] = row[-1]
    interleave()
    # A transaction that writes the table reads its own write on the primary.
    with conn.transaction():
        conn.execute(f"INSERT INTO {table} (id, embedding) VALUES (%s, %s::vector)", (100, "[1,0,0]"))
        out["in_tx_pid"] = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
        out["in_tx_read"] = list(conn.execute(read, ("[1,0,0]",)).fetchone())
        out["in_tx_count"] = conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
        raise psycopg.Rollback()
    interleave()
    out["after_rollback_count"] = conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    # Each client's session state is its own after all of this.
    out["state"] = list(conn.execute(STATE).fetchone())
    out["other_state"] = list(other.execute(STATE).fetchone())
    out["other_sum"] = other.execute("SELECT %s::int + 1", (41,)).fetchone()[0]
print(json.dumps(out))
