package policy

import "strings"

// laneSettings are the settings that can change what a read returns or how
// its values are rendered, and so the settings the vector lane mirrors from
// the client's session before it runs the client's read.
var laneSettings = []string{
	"search_path", "TimeZone", "DateStyle", "IntervalStyle", "extra_float_digits",
	"bytea_output", "client_encoding", "standard_conforming_strings",
	"lc_monetary", "lc_numeric", "lc_time", "default_text_search_config",
	"timezone_abbreviations", "row_security", "statement_timeout",
}

// LaneSettings returns the settings the vector lane sets to the client's
// values before it runs a read of the client, as PostgreSQL spells them. It
// also mirrors every custom (dotted) setting the client has set, and takes
// the client's current_user with SET ROLE.
func LaneSettings() []string {
	return append([]string(nil), laneSettings...)
}

// MirroredSetting reports whether a read on the vector lane sees the client's
// value of the setting name (case-insensitive, as PostgreSQL's names are):
// one of LaneSettings, or a custom setting (a dotted name), which the lane
// mirrors when the client has set it. Any other setting has the lane
// connection's own value there.
func MirroredSetting(name string) bool {
	if strings.Contains(name, ".") {
		return true
	}
	for _, s := range laneSettings {
		if strings.EqualFold(s, name) {
			return true
		}
	}
	return false
}
