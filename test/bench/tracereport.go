package main

// The trace replay's results: JSON, one table per trace with the three
// pools side by side, and a chart of pool size against demand.

import (
	"errors"
	"fmt"
	"html/template"
	"io"
	"math"
	"sort"
	"strings"
	"text/tabwriter"
	"time"
)

// traceReplayResult is everything the trace replay measured.
type traceReplayResult struct {
	Quick bool   `json:"quick"`
	Seed  uint64 `json:"seed"`
	// Target is the autoscaled pool's targetWarmRatio, the bar for all three.
	Target string `json:"targetWarmRatio"`
	// Day is the benchmark time that stands for 24 real hours; Compression
	// is 24 h ÷ Day, the factor from Pod-seconds measured to real Pod-hours.
	Day            time.Duration `json:"dayNanoseconds"`
	Compression    float64       `json:"compression"`
	Hold           time.Duration `json:"holdNanoseconds"`
	Miss           string        `json:"miss"`
	ScaleDownDelay time.Duration `json:"scaleDownDelayNanoseconds"`
	// WarmUp says each trace was replayed once, unmeasured, right before
	// its measured replay.
	WarmUp   bool              `json:"warmUp"`
	ReadyMin time.Duration     `json:"readyMinNanoseconds"`
	ReadyMax time.Duration     `json:"readyMaxNanoseconds"`
	Refill   refillEstimate    `json:"refill"`
	Traces   []*traceRunResult `json:"traces"`
	Errors   []string          `json:"errors,omitempty"`
}

// traceRunResult is one trace replayed against its three pools.
type traceRunResult struct {
	Trace    arrivalTrace `json:"trace"`
	Claims   int          `json:"claims"`
	MeanRate float64      `json:"meanRatePerSecond"`
	Sizes    poolSizes    `json:"sizes"`
	// AutoscalingSupported says the API server kept spec.autoscaling.
	AutoscalingSupported bool                  `json:"autoscalingSupported"`
	AutoscalingSpec      map[string]any        `json:"autoscalingSpec,omitempty"`
	AutoscalingStatus    map[string]any        `json:"autoscalingStatus,omitempty"`
	Variants             []*traceVariantResult `json:"variants"`
	Goals                goalChecks            `json:"goals"`
	// Demand is, over the trace, the claims that arrived within the last
	// mean refill time: the warm Pods a pool needs to serve them all.
	Demand *availableSeries `json:"demand,omitempty"`
	Notes  []string         `json:"notes,omitempty"`
	Errors []string         `json:"errors,omitempty"`
}

// traceVariantResult is one pool's figures under one trace.
type traceVariantResult struct {
	Name     string  `json:"name"`
	Pool     string  `json:"pool"`
	Replicas int     `json:"initialReplicas"`
	Metrics  metrics `json:"metrics"`
	// PoolSize is the pool's unclaimed Pods (creating + available) over
	// the trace; SpecReplicas its spec.replicas, DesiredReplicas the
	// autoscaler's status.autoscaling.desiredReplicas, where written.
	PoolSize        *availableSeries `json:"poolSize,omitempty"`
	SpecReplicas    *availableSeries `json:"specReplicas,omitempty"`
	DesiredReplicas *availableSeries `json:"desiredReplicas,omitempty"`
}

func (t *traceRunResult) note(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	logf("trace %s: %s", t.Trace.Name, msg)
	t.Notes = append(t.Notes, msg)
}

func (t *traceRunResult) variant(name string) *traceVariantResult {
	for _, v := range t.Variants {
		if v.Name == name {
			return v
		}
	}
	return nil
}

// correctness is an error for every pool that double-claimed.
func (r *traceReplayResult) correctness() error {
	if r == nil {
		return nil
	}
	var errs []error
	for _, t := range r.Traces {
		for _, v := range t.Variants {
			if n := v.Metrics.get("double_claims"); n > 0 {
				errs = append(errs, fmt.Errorf("trace %s, %s: %.0f double claims", t.Trace.Name, v.Name, n))
			}
		}
	}
	return errors.Join(errs...)
}

// traceRows are the table's rows, in order.
var traceRows = []row{
	{key: "warm_fraction", label: "warm hits", unit: "%1"},
	{key: "claims", label: "claims", unit: "n"},
	{key: "claims_cold", label: "  missed: no sandbox available at once", unit: "n"},
	{key: "claims_failed", label: "  never served", unit: "n"},
	{key: "ready_p50_ms", label: "claim-to-ready p50", unit: "ms"},
	{key: "ready_p99_ms", label: "claim-to-ready p99", unit: "ms"},
	{key: "ready_max_ms", label: "claim-to-ready max", unit: "ms"},
	{key: "ready_cold_p50_ms", label: "  of those that missed, p50", unit: "ms"},
	{key: "pod_seconds", label: "Pod-seconds (unclaimed Pods)", unit: "n"},
	{key: "pod_hours_real", label: "Pod-hours at real scale", unit: "h"},
	{key: "mean_pool", label: "mean pool size", unit: "x"},
	{key: "pool_min", label: "pool size min", unit: "n"},
	{key: "pool_max", label: "pool size max", unit: "n"},
	{key: "replicas_min", label: "spec.replicas min", unit: "n"},
	{key: "replicas_max", label: "spec.replicas max", unit: "n"},
	{key: "pod_bound_p50_ms", label: "new Pods, first seen → bound p50 (scheduler)", unit: "ms"},
	{key: "pod_ready_p50_ms", label: "new Pods, first seen → Ready p50 (+ kwok's start)", unit: "ms"},
	{key: "pod_start_p50_ms", label: "new Pods, first seen → available p50 (+ relabel)", unit: "ms"},
	{key: "pod_start_p90_ms", label: "new Pods, first seen → available p90", unit: "ms"},
	{key: "releases_failed", label: "releases refused", unit: "n"},
	{key: "double_claims", label: "double claims", unit: "n"},
}

// fmtTraceValue is fmtValue with a warm-hit share to a tenth of a percent
// ("%1"), which is where 99% is decided, and hours to two decimals.
func fmtTraceValue(v float64, unit string) string {
	switch {
	case math.IsNaN(v):
		return "–"
	case unit == "%1":
		return fmt.Sprintf("%.1f%%", 100*v)
	case unit == "h":
		return fmt.Sprintf("%.1f", v)
	}
	return fmtValue(v, unit)
}

// printTables writes the trace replay's parameters, one table per trace
// and the goals over all traces.
func (r *traceReplayResult) printTables(w io.Writer) {
	if r == nil {
		return
	}
	fmt.Fprintf(w, "\n== Trace replay: a mean-sized, a peak-sized and an autoscaled pool under the same claims ==\n")
	fmt.Fprintf(w, "time compressed %.0f×: %s of benchmark time stands for 24 h; Pod-hours at real scale = Pod-seconds × %.0f ÷ 3600\n",
		r.Compression, r.Day, r.Compression)
	fmt.Fprintf(w, "Pods Ready %s–%s after binding; refill time (claim until the pool is full again, %d serial claims on a pool of %d): mean %s, p90 %s, max %s\n",
		r.ReadyMin, r.ReadyMax, r.Refill.Samples, calibrationPoolSize, r.Refill.Mean.Round(time.Millisecond), r.Refill.P90.Round(time.Millisecond), r.Refill.Max.Round(time.Millisecond))
	miss := "creates a cold sandbox from the pool's template (claim.ClaimOptions.ColdIfEmpty)"
	if r.Miss == traceMissWait {
		miss = "waits for the pool to have one available"
	}
	fmt.Fprintf(w, "warm hit: the pool had an available sandbox at once; on a miss the agent %s; claim-to-ready runs from the claim's arrival until the agent holds a Ready sandbox\n", miss)
	fmt.Fprintf(w, "agents hold a sandbox %s, then release it; seed %d; target warm-hit ratio %s\n", r.Hold, r.Seed, r.Target)
	fmt.Fprintf(w, "%s\n", r.warmUpNote())
	for _, t := range r.Traces {
		t.printTable(w)
	}
	r.printGoalSummary(w)
	for _, e := range r.Errors {
		fmt.Fprintf(w, "  ERROR (trace replay): %s\n", e)
	}
}

func (t *traceRunResult) printTable(w io.Writer) {
	fmt.Fprintf(w, "\n-- %s: %d claims, %.2f/s on average --\n", t.Trace.Title, t.Claims, t.MeanRate)
	s := t.Sizes
	fmt.Fprintf(w, "%s: %d = %s\n", variantMean, s.Mean, s.MeanWhy)
	fmt.Fprintf(w, "%s: %d = %s\n", variantPeak, s.Peak, s.PeakWhy)
	autoHead := variantAuto
	if t.AutoscalingSupported {
		fmt.Fprintf(w, "%s: target %s, min %d, max %d, initial %d; %s\n", variantAuto, targetWarmRatio, s.AutoMin, s.AutoMax, s.AutoInitial, s.AutoWhy)
	} else {
		autoHead = fmt.Sprintf("%s (NOT SUPPORTED: fixed at %d)", variantAuto, s.AutoInitial)
		fmt.Fprintf(w, "%s: autoscaling is not supported by this build: spec.autoscaling was not kept, so this pool stayed at %d replicas\n", variantAuto, s.AutoInitial)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "metric\t%s\t%s\t%s\t\n", variantMean, variantPeak, autoHead)
	for _, row := range traceRows {
		vals := make([]string, len(traceVariants))
		measured := false
		for i, name := range traceVariants {
			v := math.NaN()
			if vr := t.variant(name); vr != nil {
				v = vr.Metrics.get(row.key)
			}
			measured = measured || !math.IsNaN(v)
			vals[i] = fmtTraceValue(v, row.unit)
		}
		if measured {
			unit := row.unit
			if unit == "%1" || unit == "h" {
				unit = "n"
			}
			fmt.Fprintf(tw, "%s%s\t%s\t\n", row.label, unitSuffix(unit), strings.Join(vals, "\t"))
		}
	}
	_ = tw.Flush()
	if st := t.AutoscalingStatus; st != nil {
		fmt.Fprintf(w, "%s status.autoscaling at the end: %s\n", variantAuto, fmtMap(st))
	}
	t.printGoals(w)
	for _, n := range t.Notes {
		fmt.Fprintf(w, "  note: %s\n", n)
	}
	for _, e := range t.Errors {
		fmt.Fprintf(w, "  ERROR: %s\n", e)
	}
}

func (t *traceRunResult) printGoals(w io.Writer) {
	g := t.Goals
	warm := func(name string) string {
		if v := t.variant(name); v != nil {
			return fmtTraceValue(v.Metrics.get("warm_fraction"), "%1")
		}
		return "–"
	}
	fmt.Fprintf(w, "goals: autoscaled meets %s warm hits: %s (%s)\n", r2pct(g.Target), g.MeetsTarget, warm(variantAuto))
	budget := g.WithinBudget
	switch {
	case g.BestFixed != "":
		budget += fmt.Sprintf(" (%.2f× the Pod-seconds of %s, the cheapest fixed pool that meets the target)", g.PodSecondsRatio, g.BestFixed)
		if g.WithinNote != "" {
			budget += "; " + g.WithinNote
		}
	case g.WithinNote != "":
		budget += " (" + g.WithinNote + ")"
	}
	fmt.Fprintf(w, "       ≤ %.1f× the Pod-seconds of the best fixed pool that meets it: %s\n", podBudget, budget)
	fmt.Fprintf(w, "       beats %s warm hits: %s (%s against %s)\n", variantMean, g.BeatsMean, warm(variantAuto), warm(variantMean))
}

func r2pct(f float64) string { return fmt.Sprintf("%g%%", 100*f) }

// printGoalSummary counts each goal's verdicts over the traces.
func (r *traceReplayResult) printGoalSummary(w io.Writer) {
	if len(r.Traces) == 0 {
		return
	}
	count := func(get func(goalChecks) string) string {
		n := map[string]int{}
		for _, t := range r.Traces {
			n[get(t.Goals)]++
		}
		var parts []string
		for _, v := range []string{verdictYes, verdictNo, verdictTie, verdictNA} {
			if n[v] > 0 {
				parts = append(parts, fmt.Sprintf("%s on %d", v, n[v]))
			}
		}
		return strings.Join(parts, ", ")
	}
	fmt.Fprintf(w, "\nGoals over %d traces (issue 21): autoscaled meets its target: %s; within %.1f× the best fixed pool's Pod-seconds: %s; beats the mean-sized pool's warm hits: %s\n",
		len(r.Traces), count(func(g goalChecks) string { return g.MeetsTarget }), podBudget,
		count(func(g goalChecks) string { return g.WithinBudget }), count(func(g goalChecks) string { return g.BeatsMean }))
}

// fmtMap writes a small JSON object as key=value pairs, by key.
func fmtMap(m map[string]any) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s=%v", k, m[k])
	}
	return strings.Join(parts, " ")
}

// --- the chart -------------------------------------------------------------------

// traceChart draws a trace's demand and its three pools' sizes over time;
// nil when nothing was recorded.
func (t *traceRunResult) traceChart() *lineChart {
	c := &lineChart{label: fmt.Sprintf("%s: pool size and demand over time", t.Trace.Title)}
	top, end := 1.0, t.Trace.Length.Seconds()
	addSeries := func(name string, s *availableSeries) {
		if s == nil || len(s.Seconds) == 0 {
			return
		}
		l := line{name: name, step: true}
		for i, sec := range s.Seconds {
			l.points = append(l.points, point{sec, float64(s.Pods[i])})
			top = max(top, float64(s.Pods[i]))
		}
		c.lines = append(c.lines, l)
	}
	addSeries(demandLine, t.Demand)
	for _, name := range traceVariants {
		if v := t.variant(name); v != nil {
			addSeries(name, v.PoolSize)
		}
	}
	if len(c.lines) <= 1 {
		return nil // demand alone: no pool was measured
	}
	c.x = fitLinear("seconds since the trace started (compressed time)", 0, end)
	c.y = fitLinear("Pods", 0, top)
	return c
}

// warmUpNote says whether the pools lived a day before the measured one.
func (r *traceReplayResult) warmUpNote() string {
	if r.WarmUp {
		return "each trace ran once unmeasured (another draw, \"yesterday\") right before its measured replay, which the figures and charts cover"
	}
	return "no warm-up day: every pool starts the measured replay fresh, the autoscaled one with no demand history"
}

// traceReportSection is the HTML report's section for the trace replay.
func (r *traceReplayResult) traceReportSection() *reportSection {
	if r == nil || len(r.Traces) == 0 {
		return nil
	}
	sec := &reportSection{
		Title: "Trace replay: mean-sized, peak-sized and autoscaled pools",
		Intro: fmt.Sprintf("Each trace is replayed against three pools at once. Lines: each pool's unclaimed Pods (creating + available); "+
			"demand is the claims that arrived within the last mean refill time (%s), the warm Pods a pool needs to serve them all. "+
			"Time is compressed %.0f×; %s.", r.Refill.Mean.Round(time.Millisecond), r.Compression, r.warmUpNote()),
	}
	for _, t := range r.Traces {
		c := t.traceChart()
		if c == nil {
			continue
		}
		caption := t.Trace.Title
		for _, name := range traceVariants {
			if v := t.variant(name); v != nil {
				caption += fmt.Sprintf("; %s: %s warm, %s Pod-s", name,
					fmtTraceValue(v.Metrics.get("warm_fraction"), "%1"), fmtValue(v.Metrics.get("pod_seconds"), "n"))
			}
		}
		if !t.AutoscalingSupported {
			caption += " (autoscaling not supported by this build: the autoscaled pool was fixed)"
		}
		sec.Figures = append(sec.Figures, reportFigure{Caption: caption + ".", SVG: template.HTML(c.svg())})
	}
	return sec
}
