package election

import "time"

// DisableVoteGuard turns the vote guard off: only to show what it prevents.
func DisableVoteGuard(cfg *Config) { cfg.internal.NoVoteGuard = true }

// VoteGuardLength is the length of e's vote guard at its start.
func VoteGuardLength(e *Elector) (time.Duration, bool) {
	var d time.Duration
	ok := onLoop(e, func(l *raftLoop) { d = l.node.VoteGuardLength() })
	return d, ok
}
