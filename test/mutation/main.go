// Command mutation plants each of a list of single-line bugs in turn and
// runs the owning package's tests against it: every mutant must make them
// fail ("killed"). It proves the suites can catch the regressions that
// matter. It takes tens of minutes, so it is not part of make test:
//
//	KUBEBUILDER_ASSETS=$(test/tools/build.sh --dir) go run ./test/mutation [-run REGEXP]
//
// It works on a copy of the repository in a temporary directory, so the
// working tree is never left mutated, and prints a table of mutant, owning
// package, outcome and the first failing test.
package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"time"
)

type mutant struct {
	file, from, to, what string
}

// owner is the package whose tests must kill a mutant of file.
func owner(file string) string {
	switch {
	case strings.HasPrefix(file, "config/policies/"):
		return "./webhooks"
	default:
		return "./" + filepath.Dir(file)
	}
}

func main() {
	run := flag.String("run", "", "only mutants whose description matches this regular expression")
	flag.Parse()
	if err := mutate(*run); err != nil {
		fmt.Fprintln(os.Stderr, "mutation:", err)
		os.Exit(1)
	}
}

func mutate(filter string) error {
	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		return errors.New("KUBEBUILDER_ASSETS is unset: the owning packages' suites need kube-apiserver and etcd (test/tools/build.sh --dir)")
	}
	match, err := regexp.Compile(filter)
	if err != nil {
		return err
	}
	work, err := os.MkdirTemp("", "mutation-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	if out, err := exec.Command("git", "clone", "-q", ".", work).CombinedOutput(); err != nil {
		return fmt.Errorf("copying the repository: %v: %s", err, out)
	}
	survived := 0
	fmt.Printf("%-3s %-60s %-14s %-8s %s\n", "#", "mutant", "package", "result", "killed by")
	for i, m := range mutants {
		if !match.MatchString(m.what) {
			continue
		}
		result, by, err := try(work, m)
		if err != nil {
			return fmt.Errorf("mutant %d (%s): %w", i+1, m.what, err)
		}
		if result == "SURVIVED" {
			survived++
		}
		fmt.Printf("%-3d %-60s %-14s %-8s %s\n", i+1, m.what, owner(m.file), result, by)
	}
	if survived > 0 {
		return fmt.Errorf("%d mutants survived", survived)
	}
	return nil
}

// try plants m in the copy, runs the owning package's tests, and restores
// the file.
func try(work string, m mutant) (result, killedBy string, err error) {
	path := filepath.Join(work, m.file)
	original, err := os.ReadFile(path)
	if err != nil {
		return "", "", err
	}
	if n := bytes.Count(original, []byte(m.from)); n != 1 {
		return "", "", fmt.Errorf("%s holds its text %d times, want once", m.file, n)
	}
	if err := os.WriteFile(path, bytes.Replace(original, []byte(m.from), []byte(m.to), 1), 0o600); err != nil {
		return "", "", err
	}
	defer os.WriteFile(path, original, 0o600) //nolint:errcheck // best effort; the copy is removed anyway

	// The first failure is enough: a mutant is killed or it is not.
	cmd := exec.Command("go", "test", owner(m.file), "-count=1", "-timeout", "15m", "-failfast", "-args", "-ginkgo.fail-fast")
	cmd.Dir = work
	cmd.Env = append(os.Environ(), "GINKGO_NO_COLOR=TRUE")
	start := time.Now()
	out, err := cmd.CombinedOutput()
	if err == nil {
		return "SURVIVED", "", nil
	}
	if bytes.Contains(out, []byte("[build failed]")) || bytes.Contains(out, []byte("[setup failed]")) {
		return "", "", fmt.Errorf("it does not build, so its failure proves nothing; change its text:\n%s", out)
	}
	return "killed", fmt.Sprintf("%s (%s)", firstFailure(out), time.Since(start).Round(time.Second)), nil
}

var (
	// A Ginkgo spec, a subtest, or a test that failed.
	specFailure    = regexp.MustCompile(`(?m)^\s*\[FAIL\] (.+?)\s*$`)
	subtestFailure = regexp.MustCompile(`(?m)^\s*--- FAIL: (\S+/\S+)`)
	testFailure    = regexp.MustCompile(`(?m)^\s*--- FAIL: (\S+)`)
)

// firstFailure names the first failing spec or test in go test's output,
// the most precise first.
func firstFailure(out []byte) string {
	for _, re := range []*regexp.Regexp{specFailure, subtestFailure, testFailure} {
		for _, group := range re.FindSubmatch(out) {
			if name := strings.TrimSpace(string(group)); name != "" && !strings.HasPrefix(name, "--- FAIL") && !strings.HasPrefix(name, "[FAIL]") {
				return name
			}
		}
	}
	return "the package's tests failed"
}
