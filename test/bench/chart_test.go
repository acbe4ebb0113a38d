package main

import (
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// syntheticResults is a quick run's results with one burst: the SandboxSet
// refills in 1.2 s, the ReplicaSet in 2 s and its run lasts 6 s.
func syntheticResults() *results {
	return &results{
		StartedAt: time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC),
		Params:    params{N: 20, Agents: 20, Profile: profileDefault, Rate: 10, Duration: 5 * time.Second},
		Machine:   machine{CPUs: 2, CPUModel: "Test CPU", MemTotalMiB: 4096, Kernel: "6.1", GoVersion: "go1.26"},
		Git:       gitInfo{Commit: "abc123", Dirty: []string{"M x.go"}},
		Floor: &runs{Runs: []metrics{{
			"patch_loaded_p50_ms": 4, "patch_loaded_p90_ms": 9, "patch_loaded_p99_ms": 15, "patch_loaded_max_ms": 20,
		}}},
		Scenarios: []*scenarioResult{{Key: "burst", Title: "Burst", Systems: map[string]*runs{
			sysSandboxSet: {Traces: []*trace{{Run: 1,
				Available:      &availableSeries{Seconds: []float64{0, 0.2, 1.2, 3}, Pods: []int{20, 0, 20, 20}},
				ClaimLatencyMs: []float64{2, 3, 5, 8}}}},
			sysReplicaSet: {Traces: []*trace{{Run: 1,
				Available:      &availableSeries{Seconds: []float64{0, 0.3, 2, 6}, Pods: []int{20, 0, 20, 20}},
				ClaimLatencyMs: []float64{10, 20, 40, 300}}}},
		}}},
		Errors: []string{"<script>alert(1)</script>"},
	}
}

func renderReport(t *testing.T, r *results) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "report.html")
	if err := r.writeReport(path); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

var (
	svgRE      = regexp.MustCompile(`(?s)<svg viewBox.*?</svg>`)
	polylineRE = regexp.MustCompile(`<polyline class="line (\w+)" points="([^"]*)"[^>]*>`)
	tickRE     = regexp.MustCompile(`<text class="tick (x|y)"[^>]*>([^<]*)</text>`)
)

// polylines returns each line's vertices by class, and whether it is dashed.
func polylines(t *testing.T, svg string) (map[string][]point, map[string]bool) {
	t.Helper()
	lines, dashed := map[string][]point{}, map[string]bool{}
	for _, m := range polylineRE.FindAllStringSubmatch(svg, -1) {
		var pts []point
		for _, pair := range strings.Fields(m[2]) {
			xs, ys, ok := strings.Cut(pair, ",")
			x, errX := strconv.ParseFloat(xs, 64)
			y, errY := strconv.ParseFloat(ys, 64)
			if !ok || errX != nil || errY != nil {
				t.Fatalf("polyline %s: bad point %q", m[1], pair)
			}
			pts = append(pts, point{x, y})
		}
		lines[m[1]] = pts
		dashed[m[1]] = strings.Contains(m[0], "stroke-dasharray")
	}
	return lines, dashed
}

// axisAligned says whether every segment is horizontal or vertical, as a
// step function's must be.
func axisAligned(pts []point) bool {
	for i := 1; i < len(pts); i++ {
		if pts[i].x != pts[i-1].x && pts[i].y != pts[i-1].y {
			return false
		}
	}
	return true
}

func ticks(svg, which string) []string {
	var out []string
	for _, m := range tickRE.FindAllStringSubmatch(svg, -1) {
		if m[1] == which {
			out = append(out, m[2])
		}
	}
	return out
}

const (
	plotLeft, plotRight = marginLeft, chartWidth - marginRight
	plotTop, plotBottom = marginTop, chartHeight - marginBottom
)

func extent(pts []point) (minX, maxX, minY, maxY float64) {
	minX, minY, maxX, maxY = math.Inf(1), math.Inf(1), math.Inf(-1), math.Inf(-1)
	for _, p := range pts {
		minX, maxX, minY, maxY = min(minX, p.x), max(maxX, p.x), min(minY, p.y), max(maxY, p.y)
	}
	return
}

func TestReportChartsBothSystems(t *testing.T) {
	out := renderReport(t, syntheticResults())
	for _, want := range []string{"abc123 with 1 uncommitted files", "<td>default</td>", "<td>20</td>", "2025-03-01 12:00:00 UTC", "2 CPUs, Test CPU, 4096 MiB", "&lt;script&gt;"} {
		if !strings.Contains(out, want) {
			t.Errorf("the report lacks %q", want)
		}
	}
	// Self-contained: no script, nothing fetched, not even a namespace URL.
	for _, banned := range []string{"<script", "http:", "https:", "<a ", "src="} {
		if strings.Contains(out, banned) {
			t.Errorf("the report contains %q", banned)
		}
	}
	svgs := svgRE.FindAllString(out, -1)
	if len(svgs) != 2 {
		t.Fatalf("found %d charts, want 2 (burst availability and latency)", len(svgs))
	}

	avail, _ := polylines(t, svgs[0])
	for _, sys := range chartSystems {
		pts := avail[sys]
		if len(pts) < 4 {
			t.Fatalf("availability chart: %s line has %d points, want the 4 steps at least: %v", sys, len(pts), pts)
		}
		if !axisAligned(pts) {
			t.Errorf("availability chart: %s is not drawn in steps: %v", sys, pts)
		}
		minX, _, minY, maxY := extent(pts)
		// Both pools go from 20 (the top of a 0–20 axis) to 0 (its bottom).
		if minX != plotLeft || minY != plotTop || maxY != plotBottom {
			t.Errorf("availability chart: %s spans x from %v, y %v–%v; want x from %d (0 s), y %d (20 Pods) to %d (0 Pods)",
				sys, minX, minY, maxY, plotLeft, plotTop, plotBottom)
		}
	}
	// The x axis ends at the longer run, 6 s; the SandboxSet's run of 3 s
	// ends halfway.
	if _, maxX, _, _ := extent(avail[sysReplicaSet]); maxX != plotRight {
		t.Errorf("replicaset line ends at x = %v, want %d", maxX, plotRight)
	}
	if _, maxX, _, _ := extent(avail[sysSandboxSet]); maxX != (plotLeft+plotRight)/2 {
		t.Errorf("sandboxset line ends at x = %v, want %d", maxX, (plotLeft+plotRight)/2)
	}
	if got, want := ticks(svgs[0], "y"), []string{"0", "5", "10", "15", "20"}; !slices.Equal(got, want) {
		t.Errorf("availability y ticks = %v, want %v", got, want)
	}
	if got, want := ticks(svgs[0], "x"), []string{"0", "2", "4", "6"}; !slices.Equal(got, want) {
		t.Errorf("availability x ticks = %v, want %v", got, want)
	}

	lat, dashed := polylines(t, svgs[1])
	for _, name := range []string{sysSandboxSet, sysReplicaSet, floorLine} {
		pts := lat[name]
		if len(pts) < 4 {
			t.Fatalf("latency chart: %s line has %d points, want 4 at least", name, len(pts))
		}
		if name != floorLine && !axisAligned(pts) {
			t.Errorf("latency chart: %s is not drawn in steps: %v", name, pts)
		}
		if dashed[name] != (name == floorLine) {
			t.Errorf("latency chart: %s dashed = %t", name, dashed[name])
		}
		// Every CDF ends at 1, the top.
		if pts[len(pts)-1].y != plotTop {
			t.Errorf("latency chart: %s ends at y = %v, want %d (fraction 1)", name, pts[len(pts)-1].y, plotTop)
		}
		for i := 1; i < len(pts); i++ {
			if pts[i].x < pts[i-1].x || pts[i].y > pts[i-1].y {
				t.Errorf("latency chart: %s goes back or down at %v → %v", name, pts[i-1], pts[i])
			}
		}
	}
	// 2 ms to 300 ms on whole decades; the SandboxSet's fastest claim, 2 ms,
	// sits log10(2) of a decade in, at fraction 0.
	if got, want := ticks(svgs[1], "x"), []string{"1", "10", "100", "1000"}; !slices.Equal(got, want) {
		t.Errorf("latency x ticks = %v, want %v", got, want)
	}
	first := lat[sysSandboxSet][0]
	wantX := plotLeft + math.Log10(2)/3*(plotRight-plotLeft)
	if math.Abs(first.x-wantX) > 0.1 || first.y != plotBottom {
		t.Errorf("sandboxset CDF starts at %v, want (%.1f, %d)", first, wantX, plotBottom)
	}
}

func TestReportWithoutChartedScenarios(t *testing.T) {
	r := syntheticResults()
	r.Scenarios, r.Errors = nil, nil
	out := renderReport(t, r)
	if !strings.Contains(out, "No charted scenario") || strings.Contains(out, "<svg viewBox") {
		t.Errorf("a run without charted scenarios should say so and draw nothing:\n%s", out)
	}
}

// A system that left no trace (skipped, or its run failed) leaves the
// other's line alone on the chart.
func TestReportOneSystem(t *testing.T) {
	r := syntheticResults()
	delete(r.Scenarios[0].Systems, sysReplicaSet)
	r.Floor = nil
	svgs := svgRE.FindAllString(renderReport(t, r), -1)
	if len(svgs) != 2 {
		t.Fatalf("found %d charts, want 2", len(svgs))
	}
	for i, svg := range svgs {
		lines, _ := polylines(t, svg)
		if len(lines) != 1 || lines[sysSandboxSet] == nil {
			t.Errorf("chart %d: lines %v, want sandboxset's alone", i, lines)
		}
	}
}

func TestNiceTicks(t *testing.T) {
	for _, tc := range []struct {
		lo, hi float64
		want   []float64
	}{
		{0, 20, []float64{0, 5, 10, 15, 20}},
		{0, 1, []float64{0, 0.2, 0.4, 0.6, 0.8, 1}},
		{0, 13.7, []float64{0, 5, 10, 15}},
		{0, 1234, []float64{0, 500, 1000, 1500}},
		{0, 0.037, []float64{0, 0.01, 0.02, 0.03, 0.04}},
		{3, 3, []float64{3, 3.2, 3.4, 3.6, 3.8, 4}}, // a flat line still gets an axis
	} {
		if got := niceTicks(tc.lo, tc.hi, 6); !slices.Equal(got, tc.want) {
			t.Errorf("niceTicks(%v, %v) = %v, want %v", tc.lo, tc.hi, got, tc.want)
		}
	}
	// Whatever the range: evenly spaced round ticks that cover it.
	rng := rand.New(rand.NewPCG(1, 2))
	for range 1000 {
		lo := math.Round(rng.Float64()*100) * float64(rng.IntN(3))
		hi := lo + rng.ExpFloat64()*math.Pow(10, float64(rng.IntN(8)-3))
		got := niceTicks(lo, hi, 6)
		step := got[1] - got[0]
		mantissa := step / math.Pow(10, math.Floor(math.Log10(step)+1e-6))
		switch {
		case len(got) < 3 || len(got) > 11:
			t.Fatalf("niceTicks(%v, %v) = %d ticks: %v", lo, hi, len(got), got)
		case got[0] > lo || got[len(got)-1] < hi:
			t.Fatalf("niceTicks(%v, %v) = %v does not cover the range", lo, hi, got)
		case !slices.ContainsFunc([]float64{1, 2, 5}, func(m float64) bool { return math.Abs(mantissa-m) < 1e-6 }):
			t.Fatalf("niceTicks(%v, %v) steps by %v, not 1, 2 or 5 times a power of ten", lo, hi, step)
		}
		for i := 2; i < len(got); i++ {
			if math.Abs(got[i]-got[i-1]-step) > step*1e-6 {
				t.Fatalf("niceTicks(%v, %v) = %v is unevenly spaced", lo, hi, got)
			}
		}
	}
}

func TestLogTicks(t *testing.T) {
	for _, tc := range []struct {
		lo, hi float64
		want   []float64
	}{
		{0.1, 1000, []float64{0.1, 1, 10, 100, 1000}},
		{1, 10, []float64{1, 2, 5, 10}},
		{fitLog("", 3, 9).min, fitLog("", 3, 9).max, []float64{1, 2, 5, 10}},
		{fitLog("", 2, 300).min, fitLog("", 2, 300).max, []float64{1, 10, 100, 1000}},
	} {
		if got := logTicks(tc.lo, tc.hi); !slices.EqualFunc(got, tc.want, func(a, b float64) bool { return math.Abs(a-b) < 1e-9*b }) {
			t.Errorf("logTicks(%v, %v) = %v, want %v", tc.lo, tc.hi, got, tc.want)
		}
	}
}

func TestLatencyQuantiles(t *testing.T) {
	ms := make([]float64, 5000)
	for i := range ms {
		ms[i] = float64(i + 1)
	}
	rand.New(rand.NewPCG(3, 4)).Shuffle(len(ms), func(i, j int) { ms[i], ms[j] = ms[j], ms[i] })
	q := latencyQuantiles(ms, 2000)
	if len(q) != 2000 || !slices.IsSorted(q) {
		t.Fatalf("latencyQuantiles(5000, 2000): %d values, sorted %t; want 2000 sorted", len(q), slices.IsSorted(q))
	}
	// q[i] is the nearest-rank quantile (i+1)/2000 of 1..5000.
	for i, want := range map[int]float64{0: 3, 999: 2500, 1979: 4950, 1999: 5000} {
		if q[i] != want {
			t.Errorf("quantile %d/2000 = %v, want %v", i+1, q[i], want)
		}
	}
	if got := latencyQuantiles([]float64{3.0004, 1, 2}, 2000); !slices.Equal(got, []float64{1, 2, 3}) {
		t.Errorf("a few latencies: %v, want all of them, sorted, to the µs", got)
	}
}

func TestDownsampleSteps(t *testing.T) {
	start := time.Now()
	points := make([]availPoint, 10000)
	for i := range points {
		points[i] = availPoint{at: start.Add(time.Duration(i) * time.Millisecond), available: 50 + i%3}
	}
	points[7777].available = 0 // a dip a naive every-nth pick would miss
	points[4321].available = 99
	got := downsampleSteps(points, 2000)
	if len(got) > 2000 {
		t.Fatalf("%d points, want at most 2000", len(got))
	}
	if got[0] != points[0] || got[len(got)-1] != points[len(points)-1] {
		t.Error("the first or last point was dropped")
	}
	if !slices.IsSortedFunc(got, func(a, b availPoint) int { return a.at.Compare(b.at) }) {
		t.Error("points out of time order")
	}
	if !slices.Contains(got, points[7777]) || !slices.Contains(got, points[4321]) {
		t.Error("the lowest or highest point was dropped")
	}
	if short := points[:100]; len(downsampleSteps(short, 2000)) != 100 {
		t.Error("a short series was thinned")
	}
}

func TestAvailableBetween(t *testing.T) {
	t0 := time.Now()
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	tr := &tracker{availHistory: []availPoint{{at(0), 5}, {at(100), 4}, {at(200), 3}, {at(300), 5}}}
	got := tr.availableBetween(at(150), at(250))
	want := []availPoint{{at(150), 4}, {at(200), 3}, {at(250), 3}}
	if !slices.Equal(got, want) {
		t.Errorf("availableBetween(150 ms, 250 ms) = %v, want %v", got, want)
	}
	if got := tr.availableBetween(at(-50), at(-10)); !slices.Equal(got, []availPoint{{at(-50), 0}, {at(-10), 0}}) {
		t.Errorf("before any change: %v, want 0 throughout", got)
	}
	s := newAvailableSeries(tr.availableBetween(at(50), at(400)), at(50))
	if !slices.Equal(s.Seconds, []float64{0, 0.05, 0.15, 0.25, 0.35}) || !slices.Equal(s.Pods, []int{5, 4, 3, 5, 5}) {
		t.Errorf("series from 50 ms = %v, %v", s.Seconds, s.Pods)
	}
}

func TestReportPath(t *testing.T) {
	for _, tc := range []struct{ out, report, want string }{
		{"/r/results.json", "bench-report.html", "/r/bench-report.html"},
		{"/r/results.json", "elsewhere/x.html", "elsewhere/x.html"},
		{"/r/results.json", "", ""},
	} {
		if got := reportPath(tc.out, tc.report); got != tc.want {
			t.Errorf("reportPath(%q, %q) = %q, want %q", tc.out, tc.report, got, tc.want)
		}
	}
}

// The -rss10k figures go into the report as a table: a column per run, a
// median with its range, and no row for what no run measured.
func TestReportTablesScaleRuns(t *testing.T) {
	r := syntheticResults()
	r.Params.RSSPods, r.Params.RSSPoolSize, r.Params.RSSClaimRate, r.Params.RSSPickers = 10000, 100, 50, 100
	scale := []metrics{
		{"pool_pods": 10000, "spread_claim_p50_ms": 40, "spread_claim_p99_ms": 250},
		{"pool_pods": 10000, "spread_claim_p50_ms": 130, "spread_claim_p99_ms": 900},
		{"pool_pods": 10000, "spread_claim_p50_ms": 60, "spread_claim_p99_ms": 300},
	}
	r.RSS10k = &runs{Runs: scale, Summary: summarizeRuns(scale)}
	out := renderReport(t, r)
	for _, want := range []string{
		"<h2>Manager memory with 10000 pool Pods, in pools of 100</h2>",
		"through claim.Pickers, each a watch of its pool (100)",
		"<tr><th>metric</th><th>run 1</th><th>run 2</th><th>run 3</th><th>median (range)</th></tr>",
		"<tr><td>  claim latency p50 (ms)</td><td>40.0</td><td>130</td><td>60.0</td><td>60.0 (40.0–130)</td></tr>",
		"<tr><td>  claim latency p99 (ms)</td><td>250</td><td>900</td><td>300</td><td>300 (250–900)</td></tr>",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("the report lacks %q", want)
		}
	}
	if strings.Contains(out, "served warm") {
		t.Error("the report has a row for a figure no run measured")
	}
}
