package election

// DisableVoteGuard turns the vote guard off in cfg. It exists only in test
// builds, so that a test can show the double vote the guard prevents.
func DisableVoteGuard(cfg *Config) { cfg.unsafeNoVoteGuard = true }
