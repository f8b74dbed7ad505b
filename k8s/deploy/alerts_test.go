package deploy

import (
	"os"
	"os/exec"
	"testing"
)

const rulesDir = "../../deploy/prometheus"

// promtool runs promtool in deploy/prometheus. It skips the test where
// promtool is missing, except in CI (CI is set), where .ci/deps installs it
// (Debian package prometheus) and a skip would hide a broken rule.
func promtool(t *testing.T, args ...string) {
	t.Helper()
	path, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("promtool not found in CI: .ci/deps installs it (apt-get install prometheus)")
		}
		t.Skip("promtool not found; install it to check the alert rules (apt-get install prometheus)")
	}
	cmd := exec.Command(path, args...)
	cmd.Dir = rulesDir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("promtool %v: %v\n%s", args, err, out)
	}
	t.Logf("promtool %v:\n%s", args, out)
}

// TestAlertRulesCheck: the rules parse and their expressions are valid.
func TestAlertRulesCheck(t *testing.T) { promtool(t, "check", "rules", "alerts.yaml") }

// TestAlertRulesUnitTests: each alert fires when it should and not before
// (deploy/prometheus/alerts_test.yaml).
func TestAlertRulesUnitTests(t *testing.T) { promtool(t, "test", "rules", "alerts_test.yaml") }
