package main

// The HTML report: what the runs saw over time, drawn as inline SVG line
// charts in one self-contained file that needs no script and no network.

import (
	"bytes"
	"fmt"
	"html"
	"html/template"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// The geometry of every chart, in SVG user units (pixels at 100%).
const (
	chartWidth   = 640
	chartHeight  = 300
	marginLeft   = 60
	marginRight  = 16
	marginTop    = 12
	marginBottom = 44
)

const floorLine = "floor" // the dashed line of a latency chart

// lineColors tell the systems apart the same way on every chart.
var lineColors = map[string]string{
	sysSandboxSet: "#1f77b4",
	sysReplicaSet: "#e6550d",
	floorLine:     "#555555",
	// The trace replay's chart (tracereport.go).
	variantMean: "#2ca02c",
	variantPeak: "#d62728",
	variantAuto: "#9467bd",
	demandLine:  "#aaaaaa",
}

// chartSystems are the systems in the order the report draws them.
var chartSystems = []string{sysSandboxSet, sysReplicaSet}

type point struct{ x, y float64 }

// line is one system's data on a chart.
type line struct {
	name   string // a system or floorLine: the line's class and colour
	points []point
	// step holds each y until the next x: counts and CDFs move in jumps,
	// and a straight segment between two samples would invent values.
	step bool
	// known marks a line drawn through a few known points (dashed, with
	// dots), where what lies between them was not measured.
	known bool
}

type axis struct {
	label    string
	min, max float64
	log      bool
}

type lineChart struct {
	label string // for screen readers
	x, y  axis
	lines []line
}

// fitLinear is an axis over [lo, hi] widened to round ticks.
func fitLinear(label string, lo, hi float64) axis {
	t := niceTicks(lo, hi, 6)
	return axis{label: label, min: t[0], max: t[len(t)-1]}
}

// fitLog is a log axis over [lo, hi] widened to whole decades.
func fitLog(label string, lo, hi float64) axis {
	lo = math.Pow(10, math.Floor(math.Log10(lo)))
	hi = math.Pow(10, math.Ceil(math.Log10(hi)))
	if hi <= lo {
		hi = lo * 10
	}
	return axis{label: label, min: lo, max: hi, log: true}
}

// niceTicks returns about target evenly spaced ticks covering [lo, hi], at
// a step of 1, 2 or 5 times a power of ten, starting and ending on a tick.
func niceTicks(lo, hi float64, target int) []float64 {
	if !(hi > lo) {
		hi = lo + 1
	}
	raw := (hi - lo) / float64(max(target-1, 1))
	exp := int(math.Floor(math.Log10(raw)))
	mantissa := 10
	for _, m := range []int{1, 2, 5} {
		if float64(m)*math.Pow10(exp) >= raw*(1-1e-9) {
			mantissa = m
			break
		}
	}
	// A tick is k·mantissa·10^exp: dividing an integer by an exact power
	// of ten gives 0.6, where 3 × 0.2 would give 0.6000000000000001.
	tick := func(k int) float64 {
		if exp < 0 {
			return float64(k*mantissa) / math.Pow10(-exp)
		}
		return float64(k*mantissa) * math.Pow10(exp)
	}
	step := float64(mantissa) * math.Pow10(exp)
	first, last := int(math.Floor(lo/step+1e-9)), int(math.Ceil(hi/step-1e-9))
	ticks := make([]float64, 0, last-first+1)
	for k := first; k <= last; k++ {
		ticks = append(ticks, tick(k))
	}
	return ticks
}

// logTicks returns the powers of ten in [lo, hi], and 2 and 5 times them
// too when the axis spans a single decade, so it never has fewer than 3.
func logTicks(lo, hi float64) []float64 {
	var ticks []float64
	for e := math.Floor(math.Log10(lo) + 1e-9); math.Pow(10, e) <= hi*(1+1e-9); e++ {
		d := math.Pow(10, e)
		for _, m := range []float64{1, 2, 5} {
			if (m == 1 || hi/lo <= 10*(1+1e-9)) && m*d >= lo*(1-1e-9) && m*d <= hi*(1+1e-9) {
				ticks = append(ticks, m*d)
			}
		}
	}
	return ticks
}

func (a axis) ticks() []float64 {
	if a.log {
		return logTicks(a.min, a.max)
	}
	return niceTicks(a.min, a.max, 6)
}

// tickLabel formats v with no more decimals than the ticks' spacing needs.
func (a axis) tickLabel(v float64, ticks []float64) string {
	if a.log || len(ticks) < 2 {
		return strconv.FormatFloat(v, 'g', -1, 64)
	}
	decimals := max(0, int(-math.Floor(math.Log10(ticks[1]-ticks[0])+1e-9)))
	return strconv.FormatFloat(v, 'f', decimals, 64)
}

// position maps v onto the pixels from..to, clamping what lies outside.
func (a axis) position(v, from, to float64) float64 {
	var f float64
	if a.log {
		v = max(v, a.min)
		f = (math.Log10(v) - math.Log10(a.min)) / (math.Log10(a.max) - math.Log10(a.min))
	} else {
		f = (v - a.min) / (a.max - a.min)
	}
	return from + min(max(f, 0), 1)*(to-from)
}

// pixels are the line's vertices on the chart, with the corners of a step.
func (c lineChart) pixels(l line) []point {
	var out []point
	add := func(x, y float64) {
		p := point{c.x.position(x, marginLeft, chartWidth-marginRight), c.y.position(y, chartHeight-marginBottom, marginTop)}
		p.x, p.y = math.Round(p.x*10)/10, math.Round(p.y*10)/10
		if len(out) == 0 || out[len(out)-1] != p {
			out = append(out, p)
		}
	}
	for i, p := range l.points {
		if l.step && i > 0 {
			add(p.x, l.points[i-1].y)
		}
		add(p.x, p.y)
	}
	return out
}

func num(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) }

// svg draws the chart: grid, ticks, axis labels, then the lines in order.
func (c lineChart) svg() string {
	var b strings.Builder
	left, right := float64(marginLeft), float64(chartWidth-marginRight)
	top, bottom := float64(marginTop), float64(chartHeight-marginBottom)
	fmt.Fprintf(&b, `<svg viewBox="0 0 %d %d" width="%d" height="%d" role="img" aria-label="%s">`+"\n",
		chartWidth, chartHeight, chartWidth, chartHeight, html.EscapeString(c.label))
	xt, yt := c.x.ticks(), c.y.ticks()
	for _, v := range xt {
		x := num(math.Round(c.x.position(v, left, right)*10) / 10)
		fmt.Fprintf(&b, `<line class="grid" x1="%s" y1="%s" x2="%s" y2="%s"/>`+"\n", x, num(top), x, num(bottom))
		fmt.Fprintf(&b, `<text class="tick x" x="%s" y="%s" text-anchor="middle">%s</text>`+"\n", x, num(bottom+16), c.x.tickLabel(v, xt))
	}
	for _, v := range yt {
		y := num(math.Round(c.y.position(v, bottom, top)*10) / 10)
		fmt.Fprintf(&b, `<line class="grid" x1="%s" y1="%s" x2="%s" y2="%s"/>`+"\n", num(left), y, num(right), y)
		fmt.Fprintf(&b, `<text class="tick y" x="%s" y="%s" text-anchor="end" dominant-baseline="middle">%s</text>`+"\n", num(left-6), y, c.y.tickLabel(v, yt))
	}
	fmt.Fprintf(&b, `<rect class="frame" x="%s" y="%s" width="%s" height="%s"/>`+"\n", num(left), num(top), num(right-left), num(bottom-top))
	fmt.Fprintf(&b, `<text class="label" x="%s" y="%s" text-anchor="middle">%s</text>`+"\n", num((left+right)/2), num(chartHeight-6), html.EscapeString(c.x.label))
	fmt.Fprintf(&b, `<text class="label" transform="rotate(-90)" x="%s" y="14" text-anchor="middle">%s</text>`+"\n", num(-(top+bottom)/2), html.EscapeString(c.y.label))
	for _, l := range c.lines {
		var pts []string
		px := c.pixels(l)
		for _, p := range px {
			pts = append(pts, num(p.x)+","+num(p.y))
		}
		dash := ""
		if l.known {
			dash = ` stroke-dasharray="6 4"`
		}
		fmt.Fprintf(&b, `<polyline class="line %s" points="%s" fill="none" stroke="%s" stroke-width="1.8"%s/>`+"\n",
			l.name, strings.Join(pts, " "), lineColors[l.name], dash)
		if l.known {
			for _, p := range px {
				fmt.Fprintf(&b, `<circle class="mark %s" cx="%s" cy="%s" r="3" fill="%s"/>`+"\n", l.name, num(p.x), num(p.y), lineColors[l.name])
			}
		}
	}
	b.WriteString("</svg>")
	return b.String()
}

// --- from the results to charts ----------------------------------------------

func (r *results) scenarioByKey(key string) *scenarioResult {
	for _, s := range r.Scenarios {
		if s.Key == key {
			return s
		}
	}
	return nil
}

// traceOf is a system's trace of repetition run, or nil.
func (s *scenarioResult) traceOf(system string, run int) *trace {
	if x := s.Systems[system]; x != nil {
		for _, tr := range x.Traces {
			if tr.Run == run {
				return tr
			}
		}
	}
	return nil
}

// tracedRuns lists the repetitions either system left a trace of.
func (s *scenarioResult) tracedRuns() []int {
	var out []int
	for _, x := range s.Systems {
		for _, tr := range x.Traces {
			if !slices.Contains(out, tr.Run) {
				out = append(out, tr.Run)
			}
		}
	}
	slices.Sort(out)
	return out
}

// availabilityChart puts both systems' available counts of one run on one
// chart, from the run's start; nil when neither recorded any.
func (r *results) availabilityChart(s *scenarioResult, run int, xLabel string) *lineChart {
	c := &lineChart{label: fmt.Sprintf("%s, run %d: available Pods over time", s.Title, run)}
	var end float64
	top := float64(r.Params.N)
	for _, sys := range chartSystems {
		tr := s.traceOf(sys, run)
		if tr == nil || tr.Available == nil || len(tr.Available.Seconds) == 0 {
			continue
		}
		l := line{name: sys, step: true}
		for i, sec := range tr.Available.Seconds {
			pods := float64(tr.Available.Pods[i])
			l.points = append(l.points, point{sec, pods})
			end, top = max(end, sec), max(top, pods)
		}
		c.lines = append(c.lines, l)
	}
	if len(c.lines) == 0 {
		return nil
	}
	c.x = fitLinear(xLabel, 0, end)
	c.y = fitLinear("available Pods", 0, top)
	return c
}

// latencyChart draws the CDF of one run's won claims for both systems, on
// a log scale, with the floor's raw label patches (floorPrefix) dashed
// through the quantiles the floor keeps; nil when no claim was won.
func (r *results) latencyChart(s *scenarioResult, run int, floorPrefix string) *lineChart {
	c := &lineChart{label: fmt.Sprintf("%s, run %d: claim latency CDF", s.Title, run)}
	lo, hi := math.Inf(1), math.Inf(-1)
	see := func(ms float64) {
		if ms > 0 {
			lo, hi = min(lo, ms), max(hi, ms)
		}
	}
	for _, sys := range chartSystems {
		tr := s.traceOf(sys, run)
		if tr == nil || len(tr.ClaimLatencyMs) == 0 {
			continue
		}
		lat := tr.ClaimLatencyMs
		l := line{name: sys, step: true, points: []point{{lat[0], 0}}}
		for i, ms := range lat {
			l.points = append(l.points, point{ms, float64(i+1) / float64(len(lat))})
			see(ms)
		}
		c.lines = append(c.lines, l)
	}
	if len(c.lines) == 0 {
		return nil
	}
	if r.Floor != nil && run-1 < len(r.Floor.Runs) {
		m := r.Floor.Runs[run-1]
		l := line{name: floorLine, known: true}
		for _, q := range []struct {
			key      string
			fraction float64
		}{{"_p50_ms", 0.5}, {"_p90_ms", 0.9}, {"_p99_ms", 0.99}, {"_max_ms", 1}} {
			if v := m.get(floorPrefix + q.key); !math.IsNaN(v) {
				l.points = append(l.points, point{v, q.fraction})
				see(v)
			}
		}
		if len(l.points) > 0 {
			c.lines = append(c.lines, l)
		}
	}
	c.x = fitLog("claim latency (ms, log scale)", lo, hi)
	c.y = fitLinear("fraction of claims won", 0, 1)
	return c
}

// --- the page ------------------------------------------------------------------

type reportFigure struct {
	Caption string
	SVG     template.HTML
}

type reportSection struct {
	Title, Intro string
	Table        *reportTable
	Figures      []reportFigure
}

// reportTable is a section's figures by run: a row per metric, a column
// per run and one for the median and range.
type reportTable struct {
	Head []string
	Rows [][]string
}

type legendEntry struct {
	Swatch template.HTML
	Text   string
}

type reportPage struct {
	Title    string
	Header   [][2]string
	Legend   []legendEntry
	Sections []reportSection
	Errors   []string
}

var reportTemplate = template.Must(template.New("report").Parse(`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{{.Title}}</title>
<style>
body { font: 14px/1.4 system-ui, sans-serif; margin: 24px auto; max-width: 1320px; color: #222; }
table.header th { text-align: left; padding-right: 16px; font-weight: 600; }
table.figures { border-collapse: collapse; margin-bottom: 16px; }
table.figures th, table.figures td { padding: 2px 10px; border-bottom: 1px solid #e4e4e4; text-align: right; white-space: pre; }
table.figures th:first-child, table.figures td:first-child { text-align: left; }
ul.legend { list-style: none; padding: 0; }
ul.legend li { margin: 2px 0; }
figure { display: inline-block; margin: 8px 16px 16px 0; vertical-align: top; }
figcaption { font-size: 13px; color: #444; max-width: 640px; }
svg .grid { stroke: #e4e4e4; }
svg .frame { fill: none; stroke: #999; }
svg text { font-size: 11px; fill: #333; }
svg .label { font-size: 12px; }
.errors { color: #a00; }
</style>
</head>
<body>
<h1>{{.Title}}</h1>
<table class="header">
{{range .Header}}<tr><th>{{index . 0}}</th><td>{{index . 1}}</td></tr>
{{end}}</table>
<ul class="legend">
{{range .Legend}}<li>{{.Swatch}} {{.Text}}</li>
{{end}}</ul>
{{range .Sections}}<section>
<h2>{{.Title}}</h2>
<p>{{.Intro}}</p>
{{with .Table}}<table class="figures">
<tr>{{range .Head}}<th>{{.}}</th>{{end}}</tr>
{{range .Rows}}<tr>{{range .}}<td>{{.}}</td>{{end}}</tr>
{{end}}</table>
{{end}}{{range .Figures}}<figure>
{{.SVG}}
<figcaption>{{.Caption}}</figcaption>
</figure>
{{end}}</section>
{{else}}<p>No charted scenario (scaleup, burst, sustained) ran.</p>
{{end}}{{if .Errors}}<h2 class="errors">Errors</h2>
<ul class="errors">{{range .Errors}}<li>{{.}}</li>{{end}}</ul>
{{end}}</body>
</html>
`))

func swatch(name string) template.HTML {
	dash := ""
	if name == floorLine {
		dash = ` stroke-dasharray="6 4"`
	}
	return template.HTML(fmt.Sprintf(`<svg width="32" height="10"><line x1="0" y1="5" x2="32" y2="5" stroke="%s" stroke-width="2.5"%s/></svg>`,
		lineColors[name], dash))
}

// page gathers the header, legend and one section per charted scenario.
func (r *results) page() reportPage {
	p, m := r.Params, r.Machine
	commit := r.Git.Commit
	if commit == "" {
		commit = "unknown"
	}
	if len(r.Git.Dirty) > 0 {
		commit += fmt.Sprintf(" with %d uncommitted files", len(r.Git.Dirty))
	}
	pg := reportPage{
		Title: "SandboxSet vs ReplicaSet warm pool",
		Header: [][2]string{
			{"commit", commit},
			{"profile", p.Profile},
			{"N (pool size)", strconv.Itoa(p.N)},
			{"agents", strconv.Itoa(p.Agents)},
			{"date", r.StartedAt.Format("2006-01-02 15:04:05 MST")},
			{"machine", fmt.Sprintf("%d CPUs, %s, %d MiB, Linux %s, %s", m.CPUs, m.CPUModel, m.MemTotalMiB, m.Kernel, m.GoVersion)},
		},
		Legend: []legendEntry{
			{swatch(sysSandboxSet), "sandboxset: the SandboxSet pool"},
			{swatch(sysReplicaSet), "replicaset: a ReplicaSet pool, claimed by relabelling a Pod out of its selector"},
			{swatch(floorLine), "floor: raw label patches straight against the API server (no controller, no webhook); the results keep only its p50, p90, p99 and max, drawn as dots"},
		},
		Errors: r.Errors,
	}
	availability := func(s *scenarioResult, xLabel string) []reportFigure {
		var figs []reportFigure
		for _, run := range s.tracedRuns() {
			if c := r.availabilityChart(s, run, xLabel); c != nil {
				figs = append(figs, reportFigure{fmt.Sprintf("Run %d: available Pods.", run), template.HTML(c.svg())})
			}
		}
		return figs
	}
	latency := func(s *scenarioResult, floorPrefix, floorWhat string) []reportFigure {
		var figs []reportFigure
		for _, run := range s.tracedRuns() {
			if c := r.latencyChart(s, run, floorPrefix); c != nil {
				figs = append(figs, reportFigure{fmt.Sprintf("Run %d: claim latency, the agent's pick and write, of the claims won. Floor: %s.", run, floorWhat), template.HTML(c.svg())})
			}
		}
		return figs
	}
	if s := r.scenarioByKey("scaleup"); s != nil {
		pg.Sections = append(pg.Sections, reportSection{Title: s.Title,
			Intro:   fmt.Sprintf("Available Pods after the pool's replicas go from 0 to N = %d at 0 s.", p.N),
			Figures: availability(s, "seconds since the scale-up")})
	}
	if s := r.scenarioByKey("burst"); s != nil {
		figs := availability(s, "seconds since the burst started")
		figs = append(figs, latency(s, "patch_loaded", fmt.Sprintf("%d label patches, %d at a time, while as many Pods are created", p.N, p.Agents))...)
		pg.Sections = append(pg.Sections, reportSection{Title: s.Title,
			Intro:   fmt.Sprintf("%d agents send N = %d claims at once at 0 s, each agent claiming until none are left; the pool then refills.", p.Agents, p.N),
			Figures: figs})
	}
	if s := r.scenarioByKey("sustained"); s != nil {
		figs := availability(s, "seconds since the first claim")
		figs = append(figs, latency(s, "patch_rate", fmt.Sprintf("label patches at %g/s, each followed by a Pod creation", p.Rate))...)
		figs = append(figs, latency(s, "patch_rate_nop", fmt.Sprintf("label patches at %g/s, each followed by a Pod creation, both through a webhook that does nothing", p.Rate))...)
		pg.Sections = append(pg.Sections, reportSection{Title: s.Title,
			Intro:   fmt.Sprintf("Claims arrive at %g/s for %s, open loop, on a full pool of N = %d.", p.Rate, p.Duration, p.N),
			Figures: figs})
	}
	if x := r.RSS10k; x != nil && len(x.Runs) > 0 {
		pg.Sections = append(pg.Sections, reportSection{
			Title: fmt.Sprintf("Manager memory with %d pool Pods, in pools of %d", p.RSSPods, p.RSSPoolSize),
			Intro: fmt.Sprintf("The pools filled, then %g claims/s for %s spread over them at random through %s (0: no claims), on a new manager each run.",
				p.RSSClaimRate, p.Duration, p.spreadWatches()),
			Table: runsTable(rssRows, x)})
	}
	if sec := r.TraceReplay.traceReportSection(); sec != nil {
		pg.Legend = append(pg.Legend,
			legendEntry{swatch(variantMean), "mean-sized: a fixed pool sized by Little's law for the trace's mean rate"},
			legendEntry{swatch(variantPeak), "peak-sized: a fixed pool sized for the most claims within any refill time"},
			legendEntry{swatch(variantAuto), "autoscaled: the pool the operator sizes (spec.autoscaling)"},
			legendEntry{swatch(demandLine), "demand: claims that arrived within the last mean refill time"})
		pg.Sections = append(pg.Sections, *sec)
	}
	return pg
}

// runsTable lays out rows of single-run figures: each run's value, then
// the median and range over the runs; rows no run measured are left out.
func runsTable(rows []row, x *runs) *reportTable {
	t := &reportTable{Head: []string{"metric"}}
	for i := range x.Runs {
		t.Head = append(t.Head, fmt.Sprintf("run %d", i+1))
	}
	t.Head = append(t.Head, "median (range)")
	for _, row := range rows {
		sp, measured := x.Summary[row.key]
		if !measured {
			continue // e.g. the spread claims of a run without -rss10k-claim-rate
		}
		cells := []string{row.label + unitSuffix(row.unit)}
		for _, run := range x.Runs {
			v, ok := run[row.key]
			if !ok {
				v = math.NaN()
			}
			cells = append(cells, fmtValue(v, row.unit))
		}
		t.Rows = append(t.Rows, append(cells, fmtSpread(sp, row.unit)))
	}
	return t
}

// writeReport writes the HTML report to path.
func (r *results) writeReport(path string) error {
	var buf bytes.Buffer
	if err := reportTemplate.Execute(&buf, r.page()); err != nil {
		return fmt.Errorf("rendering the report: %w", err)
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		return fmt.Errorf("writing the report: %w", err)
	}
	return nil
}

// reportPath is where -report goes: a bare file name next to the JSON
// results (out), any other path as given; "" for no report.
func reportPath(out, report string) string {
	if report == "" || filepath.Base(report) != report {
		return report
	}
	return filepath.Join(filepath.Dir(out), report)
}
