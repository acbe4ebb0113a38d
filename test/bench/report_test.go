package main

import (
	"strings"
	"testing"
)

// TestCorrectnessFailsTheRun: speed never fails a benchmark run, but a
// double claim or an extra Pod in any run does.
func TestCorrectnessFailsTheRun(t *testing.T) {
	clean := &results{Scenarios: []*scenarioResult{{Key: "burst", Systems: map[string]*runs{
		sysSandboxSet: {Runs: []metrics{{"double_claims": 0, "over_created": 0, "claim_p99_ms": 9000}}},
	}}}}
	if err := clean.correctness(); err != nil {
		t.Errorf("a slow but correct run failed: %v", err)
	}
	for key, want := range map[string]string{"double_claims": "2 double claims", "over_created": "2 Pods created beyond need"} {
		bad := &results{Scenarios: []*scenarioResult{{Key: "burst", Systems: map[string]*runs{
			sysSandboxSet: {Runs: []metrics{{"double_claims": 0}, {key: 2}}},
		}}}}
		if err := bad.correctness(); err == nil || !strings.Contains(err.Error(), "burst, "+sysSandboxSet+", run 2: "+want) {
			t.Errorf("a run with %s = 2: correctness() = %v, want an error naming it", key, err)
		}
	}
}
