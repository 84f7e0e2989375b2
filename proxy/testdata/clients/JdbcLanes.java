// pgjdbc through txlane: unnamed statements first, then, from the 5th
// execution (prepareThreshold), a named server statement S_n, parsed in the
// same batch as BEGIN when autocommit is off. A second connection,
// interleaved between the first's steps, runs statements of its own (also
// named S_n from their 5th execution) and sets other values of the same
// settings: each must keep its own (in pool_mode transaction with pool_size
// 1 the two share one backend). Prints one JSON object.
//
// Usage: java -cp postgresql.jar JdbcLanes.java JDBC_URL TABLE
import java.sql.*;
import java.util.*;

public class JdbcLanes {
    static final String STATE = "SELECT current_setting('TimeZone'), current_setting('search_path'), "
            + "current_setting('app.who', true), pg_backend_pid()";

    static int otherRuns = 0;

    // interleave: the other connection, between two steps of the first.
    static void interleave(Connection o, PreparedStatement inc) throws SQLException {
        otherRuns++;
        inc.setInt(1, otherRuns);
        try (ResultSet r = inc.executeQuery()) {
            r.next();
            if (r.getInt(1) != otherRuns + 1) {
                throw new SQLException("the other connection's statement answered " + r.getInt(1));
            }
        }
        try (Statement s = o.createStatement()) {
            s.execute("SET TIME ZONE 'UTC'");
            s.execute("SET search_path = pg_catalog, public");
            s.execute("SELECT set_config('app.who', 'other', false)");
        }
    }

    static String state(Connection c) throws SQLException {
        try (Statement s = c.createStatement(); ResultSet r = s.executeQuery(STATE)) {
            r.next();
            return "[\"" + r.getString(1) + "\"," + quote(r.getString(2)) + ",\"" + r.getString(3) + "\"," + r.getInt(4) + "]";
        }
    }

    static String quote(String s) {
        return "\"" + s.replace("\\", "\\\\").replace("\"", "\\\"") + "\"";
    }

    public static void main(String[] args) throws Exception {
        String url = args[0], table = args[1];
        StringBuilder out = new StringBuilder("{");
        try (Connection c = DriverManager.getConnection(url); Connection o = DriverManager.getConnection(url);
                PreparedStatement inc = o.prepareStatement("SELECT ?::int + 1")) {
            try (Statement s = c.createStatement()) {
                s.execute("SET TIME ZONE 'Asia/Tokyo'");
                s.execute("SELECT set_config('app.who', 'conn', false)");
            }
            interleave(o, inc);
            int primary;
            try (Statement s = c.createStatement(); ResultSet r = s.executeQuery("SELECT pg_backend_pid()")) {
                r.next();
                primary = r.getInt(1);
            }
            out.append("\"primary_pid\":").append(primary);
            String read = "SELECT pg_backend_pid(), id FROM " + table + " ORDER BY embedding <-> ?::vector LIMIT 1";
            List<String> idle = new ArrayList<>();
            try (PreparedStatement ps = c.prepareStatement(read)) {
                for (int i = 0; i < 8; i++) {
                    ps.setString(1, "[0,1,0]");
                    try (ResultSet r = ps.executeQuery()) {
                        r.next();
                        idle.add("[" + r.getInt(1) + "," + r.getInt(2) + "]");
                    }
                    interleave(o, inc);
                }
                out.append(",\"idle_reads\":[").append(String.join(",", idle)).append("]");
                // A transaction: BEGIN travels in the same batch as the statement.
                c.setAutoCommit(false);
                List<String> tx = new ArrayList<>();
                try (Statement s = c.createStatement()) {
                    s.executeUpdate("INSERT INTO " + table + " (id, embedding) VALUES (100, '[0,1,0.5]')");
                }
                for (int i = 0; i < 3; i++) {
                    ps.setString(1, "[0,1,0]");
                    try (ResultSet r = ps.executeQuery()) {
                        r.next();
                        tx.add("[" + r.getInt(1) + "," + r.getInt(2) + "]");
                    }
                }
                c.rollback();
                c.setAutoCommit(true);
                out.append(",\"tx_reads\":[").append(String.join(",", tx)).append("]");
                interleave(o, inc);
                ps.setString(1, "[0,1,0]");
                try (ResultSet r = ps.executeQuery()) {
                    r.next();
                    out.append(",\"after\":[").append(r.getInt(1)).append(",").append(r.getInt(2)).append("]");
                }
            }
            out.append(",\"state\":").append(state(c));
            out.append(",\"other_state\":").append(state(o));
            out.append(",\"other_runs\":").append(otherRuns);
        }
        System.out.println(out.append("}"));
    }
}
