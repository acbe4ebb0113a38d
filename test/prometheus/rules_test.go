package prometheus

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

const root = "../.."

// promtool returns the promtool that test/tools/build.sh fetched.
func promtool(t *testing.T) string {
	t.Helper()
	out, err := exec.Command(filepath.Join(root, "test", "tools", "build.sh"), "--promtool").Output()
	if err != nil {
		t.Fatalf("locating promtool: %v", err)
	}
	path := strings.TrimSpace(string(out))
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("promtool is not at %s: run test/tools/build.sh promtool (make test does): %v", path, err)
	}
	return path
}

// TestRules runs the alerting rules through promtool: they must load, and
// every alert must fire, or stay quiet, as rules_test.yaml says, with its
// summary and description.
func TestRules(t *testing.T) {
	promtool := promtool(t)
	rules, err := RulesFile(root)
	if err != nil {
		t.Fatal(err)
	}
	tests, err := os.ReadFile(filepath.Join(root, RulesTestPath))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for name, data := range map[string][]byte{"rules.generated.yaml": rules, "rules_test.yaml": tests} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for _, args := range [][]string{{"check", "rules", "rules.generated.yaml"}, {"test", "rules", "rules_test.yaml"}} {
		cmd := exec.Command(promtool, args...)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

// TestExpressionsParse checks that every expression in the rules and the
// dashboard is PromQL that reads at least one metric. Which metrics exist is
// checked against a live manager in the e2e suite.
func TestExpressionsParse(t *testing.T) {
	exprs, err := Expressions(root)
	if err != nil {
		t.Fatal(err)
	}
	if len(exprs) < 20 {
		t.Fatalf("found %d expressions; the rules and dashboard hold more", len(exprs))
	}
	for where, expr := range exprs {
		names, err := MetricNames(expr)
		if err != nil {
			t.Errorf("%s: %v", where, err)
			continue
		}
		if len(names) == 0 {
			t.Errorf("%s reads no metric: %s", where, expr)
		}
	}
}
