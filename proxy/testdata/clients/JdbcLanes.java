// pgjdbc through txlane: unnamed statements first, then, from the 5th
// execution (prepareThreshold), a named server statement S_n, parsed in the
// same batch as BEGIN when autocommit is off. Prints one JSON object.
//
// Usage: java -cp postgresql.jar JdbcLanes.java JDBC_URL TABLE
import java.sql.*;
import java.util.*;

public class JdbcLanes {
    public static void main(String[] args) throws Exception {
        String url = args[0], table = args[1];
        StringBuilder out = new StringBuilder("{");
        try (Connection c = DriverManager.getConnection(url)) {
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
                ps.setString(1, "[0,1,0]");
                try (ResultSet r = ps.executeQuery()) {
                    r.next();
                    out.append(",\"after\":[").append(r.getInt(1)).append(",").append(r.getInt(2)).append("]");
                }
            }
        }
        System.out.println(out.append("}"));
    }
}
