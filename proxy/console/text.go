package console

import "strings"

// The console's command text is lexed by hand: commands are a word or two
// and their arguments, and only a command that takes a SQL statement
// (EXPLAIN) holds text that may contain anything.

// splitCommands splits a Query's text into commands at ';'. A command that
// takes a SQL statement takes the rest of the text, semicolons included.
func splitCommands(q string) []string {
	var out []string
	for {
		q = skipBlank(q)
		if q == "" {
			return out
		}
		if w, _ := firstWord(q); takesSQL(w) {
			return append(out, q)
		}
		q = stripComments(q)
		i := strings.IndexByte(q, ';')
		if i < 0 {
			return append(out, strings.TrimSpace(q))
		}
		out = append(out, strings.TrimSpace(q[:i]))
		q = q[i+1:]
	}
}

// emptyCommand reports whether q holds nothing but blanks, semicolons and
// comments (pgx pings with "-- ping").
func emptyCommand(q string) bool { return skipBlank(q) == "" }

// skipBlank drops leading white space, semicolons and comments.
func skipBlank(q string) string {
	for {
		q = strings.TrimLeft(q, " \t\r\n;")
		switch {
		case strings.HasPrefix(q, "--"):
			// As PostgreSQL's scanner: a -- comment ends at \n or \r.
			i := strings.IndexAny(q, "\n\r")
			if i < 0 {
				return ""
			}
			q = q[i+1:]
		case strings.HasPrefix(q, "/*"):
			q = q[commentEnd(q):]
		default:
			return q
		}
	}
}

// commentEnd returns the index just past the block comment that starts q,
// nested comments included (as PostgreSQL reads them), or len(q).
func commentEnd(q string) int {
	depth := 0
	for i := 0; i+1 < len(q); i++ {
		switch q[i : i+2] {
		case "/*":
			depth++
			i++
		case "*/":
			depth--
			i++
			if depth == 0 {
				return i + 1
			}
		}
	}
	return len(q)
}

// stripComments replaces the comments of a command's text with a space.
// NOTE: commands other than those taking SQL (whose text is left alone)
// hold no quoted strings that could contain "--" or "/*", except SET's
// value, which is ignored.
func stripComments(q string) string {
	var b strings.Builder
	for q != "" {
		i := strings.IndexAny(q, "-/")
		if i < 0 || i+1 >= len(q) {
			b.WriteString(q)
			break
		}
		switch q[i : i+2] {
		case "--":
			b.WriteString(q[:i])
			b.WriteByte(' ')
			j := strings.IndexAny(q[i:], "\n\r")
			if j < 0 {
				return b.String()
			}
			q = q[i+j:]
		case "/*":
			b.WriteString(q[:i])
			b.WriteByte(' ')
			q = q[i+commentEnd(q[i:]):]
		default:
			b.WriteString(q[:i+1])
			q = q[i+1:]
		}
	}
	return b.String()
}

// firstWord splits s into its first word and the rest.
func firstWord(s string) (word, rest string) {
	s = strings.TrimLeft(s, " \t\r\n")
	i := strings.IndexAny(s, " \t\r\n;")
	if i < 0 {
		return s, ""
	}
	return s[:i], s[i:]
}

// trimArgs drops blanks and trailing semicolons around a command's
// arguments.
func trimArgs(s string) string {
	return strings.TrimSpace(strings.TrimRight(s, "; \t\r\n"))
}
