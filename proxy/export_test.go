package proxy

// SeqDiscards counts the DISCARD SEQUENCES txlane sent (seqstate.go).
func SeqDiscards() int64 { return seqDiscards.Load() }
