package main

import (
	"bytes"
	"errors"
	"math"
	"strings"
	"testing"
	"time"
)

func TestClaimFigures(t *testing.T) {
	ms := func(n int) time.Duration { return time.Duration(n) * time.Millisecond }
	claims := []traceClaim{
		{id: "a", pod: "p1", holder: "a", warm: true, latency: ms(10)},
		{id: "b", pod: "p2", holder: "b", warm: true, latency: ms(20)},
		{id: "c", pod: "p3", holder: "c", latency: ms(2000)},
		{id: "d", err: errors.New("no available sandbox"), latency: ms(300000)},
	}
	m, notes := claimFigures(claims)
	for key, want := range map[string]float64{
		"claims": 4, "claims_warm": 2, "claims_cold": 1, "claims_failed": 1, "double_claims": 0,
		"warm_fraction": 0.5, "ready_p50_ms": 20, "ready_max_ms": 2000, "ready_cold_p50_ms": 2000, "ready_warm_max_ms": 20,
	} {
		if got := m.get(key); got != want {
			t.Errorf("%s = %v, want %v", key, got, want)
		}
	}
	if len(notes) != 1 || !strings.Contains(notes[0], "never served") {
		t.Errorf("notes = %q, want one about the claim never served", notes)
	}

	for name, claims := range map[string][]traceClaim{
		"one Pod won twice":        {{id: "a", pod: "p1", holder: "a", warm: true}, {id: "b", pod: "p1", holder: "b", warm: true}},
		"the holder is not the id": {{id: "a", pod: "p1", holder: "someone-else", warm: true}},
	} {
		if m, _ := claimFigures(claims); m.get("double_claims") != 1 {
			t.Errorf("%s: double_claims = %v, want 1", name, m.get("double_claims"))
		}
	}
	if m, _ := claimFigures(nil); !math.IsNaN(m.get("warm_fraction")) {
		t.Errorf("no claims: warm_fraction = %v, want not measured", m.get("warm_fraction"))
	}
}

func sampleTraceRun(supported bool) *traceRunResult {
	tr := steadyTrace(4, 90*time.Second)
	run := &traceRunResult{Trace: tr, Claims: 360, MeanRate: 4, AutoscalingSupported: supported,
		Sizes:  poolSizes{Mean: 9, MeanWhy: "why mean", Peak: 19, PeakWhy: "why peak", AutoInitial: 9, AutoMin: 1, AutoMax: 38, AutoWhy: "why auto"},
		Demand: &availableSeries{Seconds: []float64{0, 45, 90}, Pods: []int{8, 12, 9}}}
	for i, name := range traceVariants {
		run.Variants = append(run.Variants, &traceVariantResult{Name: name,
			Metrics:  metrics{"warm_fraction": 0.9 + 0.05*float64(i), "pod_seconds": 800 + 100*float64(i), "claims": 360, "double_claims": 0, "ready_p99_ms": 40},
			PoolSize: &availableSeries{Seconds: []float64{0, 90}, Pods: []int{9 + i, 9 + i}}})
	}
	run.Goals = checkGoals(0.99, variantFigures{0.9, 800}, variantFigures{0.95, 900}, variantFigures{1, 1000}, supported)
	return run
}

func TestTraceTableMarksAnUnsupportedBuild(t *testing.T) {
	for _, supported := range []bool{true, false} {
		var out bytes.Buffer
		sampleTraceRun(supported).printTable(&out)
		s := out.String()
		marked := strings.Contains(s, "NOT SUPPORTED") && strings.Contains(s, "autoscaling is not supported by this build")
		if marked == supported {
			t.Errorf("supported %t: table marks the autoscaled pool unsupported: %t\n%s", supported, marked, s)
		}
		for _, want := range []string{"warm hits", "90.0%", "100.0%", "claim-to-ready p99", "Pod-seconds", "goals:"} {
			if !strings.Contains(s, want) {
				t.Errorf("supported %t: table lacks %q:\n%s", supported, want, s)
			}
		}
	}
}

func TestTraceReplayCorrectness(t *testing.T) {
	r := &traceReplayResult{Traces: []*traceRunResult{sampleTraceRun(true)}}
	if err := r.correctness(); err != nil {
		t.Errorf("no double claims: correctness = %v, want nil", err)
	}
	r.Traces[0].Variants[2].Metrics["double_claims"] = 2
	if err := r.correctness(); err == nil || !strings.Contains(err.Error(), "2 double claims") {
		t.Errorf("correctness = %v, want 2 double claims reported", err)
	}
	var none *traceReplayResult
	if err := none.correctness(); err != nil {
		t.Errorf("no trace replay: correctness = %v, want nil", err)
	}
}

func TestTraceChart(t *testing.T) {
	run := sampleTraceRun(true)
	c := run.traceChart()
	if c == nil {
		t.Fatal("traceChart = nil, want a chart")
	}
	var names []string
	for _, l := range c.lines {
		names = append(names, l.name)
	}
	if got, want := strings.Join(names, ","), strings.Join(append([]string{demandLine}, traceVariants...), ","); got != want {
		t.Errorf("lines %s, want %s", got, want)
	}
	if c.y.max < 12 {
		t.Errorf("y axis ends at %v, below the demand's 12", c.y.max)
	}
	for _, name := range names {
		if lineColors[name] == "" {
			t.Errorf("line %s has no colour", name)
		}
	}
	run.Variants = nil
	if c := run.traceChart(); c != nil {
		t.Error("traceChart with no pool measured is not nil")
	}
}
