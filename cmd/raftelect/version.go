package main

import "runtime/debug"

// version is set at build time with
// -ldflags "-X main.version=v1.2.3" (the Dockerfile does); otherwise it is
// the module version Go recorded, "(devel)" for a build from a checkout.
var version = ""

func buildVersion() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		return bi.Main.Version
	}
	return "(devel)"
}
