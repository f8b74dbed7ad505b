package election

import "time"

// DisableVoteGuard turns the vote guard off in cfg. It exists only in test
// builds, so that a test can show the double vote the guard prevents.
func DisableVoteGuard(cfg *Config) { cfg.unsafeNoVoteGuard = true }

// VoteGuardLength returns how long the running node's vote guard lasted
// from its start, and false if it is not running.
func VoteGuardLength(e *Elector) (time.Duration, bool) {
	l := e.loop.Load()
	if l == nil {
		return 0, false
	}
	return l.guardLen, true
}
