package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// results is everything a run measured, written as JSON.
type results struct {
	StartedAt  time.Time         `json:"startedAt"`
	FinishedAt time.Time         `json:"finishedAt"`
	Command    []string          `json:"command"`
	Machine    machine           `json:"machine"`
	Git        gitInfo           `json:"git"`
	Params     params            `json:"params"`
	PIDs       map[string]int    `json:"pids,omitempty"`
	Floor      *runs             `json:"floor,omitempty"`
	Scenarios  []*scenarioResult `json:"scenarios"`
	Expiry     *runs             `json:"expiry,omitempty"`
	RSS10k     *runs             `json:"rss10k,omitempty"`
	// TraceReplay is the trace replay of pool autoscaling (-trace-replay).
	TraceReplay *traceReplayResult `json:"traceReplay,omitempty"`
	Errors      []string           `json:"errors,omitempty"`
	byKey       map[string]*scenarioResult
}

type scenarioResult struct {
	Key     string           `json:"key"`
	Title   string           `json:"title"`
	Systems map[string]*runs `json:"systems"`
}

// runs are one system's repetitions of one scenario.
type runs struct {
	Runs    []metrics         `json:"runs"`
	Summary map[string]spread `json:"summary,omitempty"`
	Notes   []string          `json:"notes,omitempty"`
	Errors  []string          `json:"errors,omitempty"`
	// Traces are the runs' courses over time, for the HTML report. A run
	// that failed before it measured anything has none.
	Traces []*trace `json:"traces,omitempty"`
}

// maxChartPoints bounds each trace's series, so the JSON stays small
// however many Pods a run moved: a chart cannot show more anyway.
const maxChartPoints = 2000

// trace is what one run saw over time.
type trace struct {
	Run int `json:"run"` // the repetition, from 1
	// Available is the pool's available count over the run.
	Available *availableSeries `json:"available,omitempty"`
	// ClaimLatencyMs are the won claims' latencies in ms, ascending; the
	// one at index i is the nearest-rank quantile (i+1)/len. All of them
	// when they are at most maxChartPoints, else that many quantiles.
	ClaimLatencyMs []float64 `json:"claimLatencyMs,omitempty"`
	ClaimsWon      int       `json:"claimsWon,omitempty"`
}

// availableSeries is a step function: Pods[i] Pods were available from
// Seconds[i] after the run started until Seconds[i+1]. Two flat arrays,
// not a list of objects, keep the indented JSON at two lines a point.
type availableSeries struct {
	Seconds []float64 `json:"seconds"`
	Pods    []int     `json:"pods"`
}

// newAvailableSeries converts points to seconds since start, keeping at
// most maxChartPoints of them.
func newAvailableSeries(points []availPoint, start time.Time) *availableSeries {
	points = downsampleSteps(points, maxChartPoints)
	s := &availableSeries{Seconds: make([]float64, len(points)), Pods: make([]int, len(points))}
	for i, p := range points {
		s.Seconds[i] = math.Round(p.at.Sub(start).Seconds()*1000) / 1000 // ms: finer is noise
		s.Pods[i] = p.available
	}
	return s
}

// downsampleSteps keeps at most limit points (limit ≥ 4): the first, the
// last, and the lowest and highest of each slice of the rest, so the dips
// and peaks a chart is read for survive, moved at most one slice in time.
func downsampleSteps(points []availPoint, limit int) []availPoint {
	if len(points) <= limit {
		return points
	}
	inner := points[1 : len(points)-1]
	parts := (limit - 2) / 2
	out := []availPoint{points[0]}
	for i := range parts {
		part := inner[i*len(inner)/parts : (i+1)*len(inner)/parts]
		lo, hi := 0, 0
		for j, p := range part {
			if p.available < part[lo].available {
				lo = j
			}
			if p.available > part[hi].available {
				hi = j
			}
		}
		out = append(out, part[min(lo, hi)])
		if lo != hi {
			out = append(out, part[max(lo, hi)])
		}
	}
	return append(out, points[len(points)-1])
}

// setClaimLatencies keeps the won claims' latencies for the CDF charts.
func (tr *trace) setClaimLatencies(won []time.Duration) {
	tr.ClaimsWon = len(won)
	tr.ClaimLatencyMs = latencyQuantiles(millis(won), maxChartPoints)
}

// latencyQuantiles sorts ms and, past limit of them, keeps the nearest-rank
// quantiles 1/limit, 2/limit, … 1, so the largest is always kept.
func latencyQuantiles(ms []float64, limit int) []float64 {
	if len(ms) == 0 {
		return nil
	}
	sorted := slices.Clone(ms)
	slices.Sort(sorted)
	n := len(sorted)
	if n > limit {
		q := make([]float64, limit)
		for i := range q {
			q[i] = sorted[((i+1)*n+limit-1)/limit-1] // rank ⌈(i+1)·n/limit⌉
		}
		sorted = q
	}
	for i, v := range sorted {
		sorted[i] = math.Round(v*1000) / 1000 // µs
	}
	return sorted
}

func (r *runs) addNote(s string) {
	for _, n := range r.Notes {
		if n == s {
			return
		}
	}
	r.Notes = append(r.Notes, s)
}

func (r *runs) addError(err error) {
	logf("error: %v", err)
	r.Errors = append(r.Errors, err.Error())
}

func (r *results) scenario(key, title string) *scenarioResult {
	if r.byKey == nil {
		r.byKey = map[string]*scenarioResult{}
	}
	if s, ok := r.byKey[key]; ok {
		return s
	}
	s := &scenarioResult{Key: key, Title: title, Systems: map[string]*runs{}}
	r.byKey[key] = s
	r.Scenarios = append(r.Scenarios, s)
	return s
}

func (s *scenarioResult) system(name string) *runs {
	if r, ok := s.Systems[name]; ok {
		return r
	}
	r := &runs{Runs: []metrics{}} // [] in the JSON, not null, for a skipped system
	s.Systems[name] = r
	return r
}

// correctness is an error for every run that double-claimed or
// over-created, in any scenario and system.
func (r *results) correctness() error {
	var errs []error
	for _, s := range r.Scenarios {
		for name, sys := range s.Systems {
			for i, m := range sys.Runs {
				for key, what := range map[string]string{"double_claims": "double claims", "over_created": "Pods created beyond need"} {
					if v, ok := m[key]; ok && v > 0 {
						errs = append(errs, fmt.Errorf("%s, %s, run %d: %.0f %s", s.Key, name, i+1, v, what))
					}
				}
			}
		}
	}
	errs = append(errs, r.TraceReplay.correctness())
	return errors.Join(errs...)
}

// summarize fills every summary from the runs.
func (r *results) summarize() {
	all := []*runs{r.Floor, r.Expiry, r.RSS10k}
	for _, s := range r.Scenarios {
		for _, sys := range s.Systems {
			all = append(all, sys)
		}
	}
	for _, x := range all {
		if x != nil {
			x.Summary = summarizeRuns(x.Runs)
		}
	}
}

// MarshalJSON leaves out what was not measured (NaN), which JSON cannot hold.
func (m metrics) MarshalJSON() ([]byte, error) {
	clean := make(map[string]float64, len(m))
	for k, v := range m {
		if !math.IsNaN(v) && !math.IsInf(v, 0) {
			clean[k] = v
		}
	}
	return json.Marshal(clean)
}

// MarshalJSON writes an unmeasured spread as nulls.
func (s spread) MarshalJSON() ([]byte, error) {
	num := func(x float64) any {
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return nil
		}
		return x
	}
	return json.Marshal(map[string]any{"median": num(s.Median), "min": num(s.Min), "max": num(s.Max), "n": s.N})
}

func (r *results) writeJSON(path string) error {
	data, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding the results: %w", err)
	}
	if err := os.WriteFile(path, append(data, '\n'), 0o644); err != nil {
		return fmt.Errorf("writing the results: %w", err)
	}
	return nil
}

// --- the machine -----------------------------------------------------------

type machine struct {
	CPUs        int     `json:"cpus"`
	CPUModel    string  `json:"cpuModel"`
	MemTotalMiB int64   `json:"memTotalMiB"`
	Kernel      string  `json:"kernel"`
	GoVersion   string  `json:"goVersion"`
	LoadAvg     string  `json:"loadAvgAtStart"`
	Hostname    string  `json:"hostname"`
	ReadyDelayS float64 `json:"readyDelaySeconds"`
}

func describeMachine(p params) machine {
	m := machine{CPUs: runtime.NumCPU(), GoVersion: runtime.Version(), ReadyDelayS: p.ReadyDelay.Seconds()}
	m.CPUModel = procField("/proc/cpuinfo", "model name")
	if kib, err := fmt.Sscanf(procField("/proc/meminfo", "MemTotal"), "%d kB", &m.MemTotalMiB); err == nil && kib == 1 {
		m.MemTotalMiB /= 1024
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		m.LoadAvg = strings.Join(strings.Fields(string(b))[:3], " ")
	}
	m.Hostname, _ = os.Hostname()
	return m
}

// procField returns the first "key: value" value in a /proc file.
func procField(path, key string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer func() { _ = f.Close() }()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(k) == key {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

type gitInfo struct {
	Commit string `json:"commit"`
	// Dirty lists the changed files: the manager is built from the working
	// tree, so its figures belong to that tree, not to the commit.
	Dirty []string `json:"dirty,omitempty"`
}

func describeGit(repo string) gitInfo {
	var g gitInfo
	if out, err := exec.Command("git", "-C", repo, "rev-parse", "HEAD").Output(); err == nil {
		g.Commit = strings.TrimSpace(string(out))
	}
	if out, err := exec.Command("git", "-C", repo, "status", "--porcelain").Output(); err == nil {
		for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			if l != "" {
				g.Dirty = append(g.Dirty, strings.TrimSpace(l))
			}
		}
	}
	return g
}

// --- tables ----------------------------------------------------------------

// row is one line of a scenario's table. A row with a floor gets a second
// line comparing each system with that floor.
type row struct {
	key, label, unit string
	floorKey         string // the floor metric compared with, if any
	floorDiff        bool   // compare by difference (what is added), not ratio
}

var costRows = []row{
	{key: "replacement_mean_ms", label: "claim → replacement created, mean (manager's metric)", unit: "ms"},
	{key: "replacement_p99_ms", label: "claim → replacement created, p99 (estimated from the manager's histogram)", unit: "ms"},
	{key: "stage_seen_mean_ms", label: "  claim → the manager's watch delivers it, mean", unit: "ms"},
	{key: "stage_seen_p99_ms", label: "  claim → the manager's watch delivers it, p99 (estimated)", unit: "ms"},
	{key: "stage_reconciling_mean_ms", label: "  claim → the pass that replaces it starts, mean", unit: "ms"},
	{key: "stage_reconciling_p99_ms", label: "  claim → the pass that replaces it starts, p99 (estimated)", unit: "ms"},
	{key: "queue_wait_mean_ms", label: "  a pool's wait in the work queue, mean", unit: "ms"},
	{key: "pass_mean_ms", label: "  a pass, mean", unit: "ms"},
	{key: "passes_per_claim", label: "  passes per claim won", unit: "x"},
	{key: "mgr_writes", label: "manager Pod writes", unit: "n"},
	{key: "mgr_writes_refused", label: "manager Pod writes refused (conflicts etc.)", unit: "n"},
	{key: "webhook_update_calls", label: "Pod webhook calls on updates", unit: "n"},
	{key: "webhook_update_mean_ms", label: "Pod webhook mean latency, updates (API server's view)", unit: "ms"},
	{key: "webhook_create_calls", label: "Pod webhook calls on creations", unit: "n"},
	{key: "webhook_create_mean_ms", label: "Pod webhook mean latency, creations", unit: "ms"},
	{key: "handler_mean_ms", label: "Pod webhook, time in the manager per call, mean (manager's metric)", unit: "ms"},
	{key: "patch_mean_ms", label: "Pod label patch, API server time, mean (claims and the manager's relabels)", unit: "ms"},
	{key: "flow_workload-low_mean_ms", label: "queued in APF level workload-low (agents), mean", unit: "ms"},
	{key: "flow_sandboxset-refill_mean_ms", label: "queued in APF level sandboxset-refill (manager's Pod writes), mean", unit: "ms"},
	{key: "seats_workload-low_mean", label: "  seats per request, workload-low, mean", unit: "x"},
	{key: "seats_sandboxset-refill_mean", label: "  seats per request, sandboxset-refill, mean", unit: "x"},
	{key: "watchers_sandboxset-refill_mean", label: "  watches a manager's Pod write notifies, mean", unit: "x"},
	{key: "adm_step_admit_ms_per_claim", label: "mutating admission time per claim won (all Pod and status UPDATEs)", unit: "ms"},
	{key: "adm_step_validate_ms_per_claim", label: "validating admission time per claim won (all UPDATEs)", unit: "ms"},
	{key: "adm_plugin_MutatingAdmissionWebhook_ms_per_claim", label: "  mutating webhooks", unit: "ms"},
	{key: "adm_plugin_ValidatingAdmissionWebhook_ms_per_claim", label: "  validating webhooks", unit: "ms"},
	{key: "adm_plugin_ValidatingAdmissionPolicy_ms_per_claim", label: "  admission policies (CEL)", unit: "ms"},
	{key: "adm_plugin_PodSecurity_ms_per_claim", label: "  Pod Security", unit: "ms"},
	{key: "api_writes_per_claim", label: "API writes per claim won, all", unit: "x"},
	{key: "write_pod_label_per_claim", label: "  Pod patches and updates (claims, relabels)", unit: "x"},
	{key: "write_pod_create_per_claim", label: "  Pod creations", unit: "x"},
	{key: "write_pod_bind_per_claim", label: "  Pod bindings (scheduler)", unit: "x"},
	{key: "write_pod_status_per_claim", label: "  Pod status writes (kubelet)", unit: "x"},
	{key: "write_pod_delete_per_claim", label: "  Pod deletions", unit: "x"},
	{key: "write_events_per_claim", label: "  Events, about any object", unit: "x"},
	{key: "pool_writes_per_claim", label: "pool-level writes per claim won (status, spec, the pool's events)", unit: "x"},
	{key: "write_pool_status_per_claim", label: "  pool status writes", unit: "x"},
	{key: "pool_events_per_claim", label: "  events about the pool", unit: "x"},
	{key: "ctrl_cpu_s", label: "controller CPU", unit: "s"},
	{key: "ctrl_cpu_ms_per_claim", label: "controller CPU per claim won", unit: "ms"},
	{key: "apiserver_cpu_ms_per_claim", label: "kube-apiserver CPU per claim won", unit: "ms"},
	{key: "ctrl_peak_rss_mib", label: "controller peak RSS", unit: "MiB"},
	{key: "ctrl_rss_mib", label: "controller RSS after", unit: "MiB"},
	{key: "apiserver_cpu_s", label: "kube-apiserver CPU", unit: "s"},
}

var correctnessRows = []row{
	{key: "created", label: "Pods created", unit: "n"},
	{key: "over_created", label: "over-creation (created − needed)", unit: "n"},
	{key: "double_claims", label: "double claims", unit: "n"},
}

// claimRows compares claim latencies with each floor's patch latencies:
// alone (idle), with creations beside them (loaded), and so on.
func claimRows(floors ...string) []row {
	against := func(q string) []row {
		var rows []row
		for _, f := range floors {
			rows = append(rows, row{key: "claim_" + q + "_ms", label: "claim latency " + q, unit: "ms", floorKey: f + "_" + q + "_ms"})
		}
		return rows
	}
	rows := append(against("p50"), row{key: "claim_p90_ms", label: "claim latency p90", unit: "ms"})
	return append(rows, against("p99")...)
}

func tableRows(key string) []row {
	refillFloors := func(k, label string) []row {
		return []row{
			{key: k, label: label, unit: "s", floorKey: "ready_all_s"},
			{key: k, label: label, unit: "s", floorKey: "floor_formula_s"},
		}
	}
	var rows []row
	switch key {
	case "scaleup":
		rows = refillFloors("time_to_n_s", "time to N available")
	case "patch":
		rows = []row{
			{key: "pick_p50_ms", label: "list to pick from p50", unit: "ms"},
			{key: "pick_p99_ms", label: "list to pick from p99", unit: "ms"},
			{key: "touch_p50_ms", label: "other-label write on a warm Pod p50", unit: "ms", floorKey: "patch_serial_p50_ms"},
			{key: "touch_p50_ms", label: "other-label write on a warm Pod p50", unit: "ms", floorKey: "patch_serial_p50_ms", floorDiff: true},
			{key: "touch_p99_ms", label: "other-label write on a warm Pod p99", unit: "ms", floorKey: "patch_serial_p99_ms"},
			{key: "patch_p50_ms", label: "claim write p50", unit: "ms", floorKey: "patch_serial_p50_ms"},
			{key: "patch_p50_ms", label: "claim write p50", unit: "ms", floorKey: "patch_serial_p50_ms", floorDiff: true},
			{key: "patch_p99_ms", label: "claim write p99", unit: "ms", floorKey: "patch_serial_p99_ms"},
			{key: "patch_failed", label: "claim writes refused", unit: "n"},
		}
		return append(rows, costRows...)
	case "burst":
		rows = append(claimRows("patch_concurrent", "patch_loaded"),
			row{key: "claims_per_s", label: "claims per second", unit: "/s"},
			row{key: "claims_ok", label: "claims won", unit: "n"},
			row{key: "writes_per_claim", label: "claim writes per claim won (races)", unit: "x"},
			row{key: "claims_lost", label: "claims that lost every race", unit: "n"})
		rows = append(rows, refillFloors("refill_s", "refill to N available")...)
		rows = append(rows, row{key: "lowest_available", label: "lowest available", unit: "n"})
	case "sustained":
		rows = append(claimRows("patch_serial", "patch_rate", "patch_rate_nop"),
			row{key: "warm_fraction", label: "served warm", unit: "%"},
			row{key: "claims", label: "claims sent", unit: "n"},
			row{key: "claims_empty", label: "found the pool empty", unit: "n"},
			row{key: "claims_lost", label: "lost every race", unit: "n"},
			row{key: "lowest_available", label: "lowest available", unit: "n"},
			row{key: "recovery_s", label: "full again after the last arrival", unit: "s"})
	case "template":
		rows = []row{
			{key: "rolled_s", label: "time until all N at the new revision, under load", unit: "s"},
			{key: "converge_s", label: "… and all N available (load stopped when rolled)", unit: "s"},
			{key: "warm_fraction", label: "claims served warm meanwhile", unit: "%"},
			{key: "claims", label: "claims sent", unit: "n"},
			{key: "claim_p50_ms", label: "claim latency p50", unit: "ms"},
			{key: "claim_p99_ms", label: "claim latency p99", unit: "ms"},
			{key: "lowest_available", label: "lowest available", unit: "n"},
			{key: "created_old_revision", label: "Pods created at the old revision after the change", unit: "n"},
		}
	}
	if key == "burst" || key == "sustained" {
		rows = append(rows, quietRows...)
	}
	rows = append(rows, correctnessRows...)
	return append(rows, costRows...)
}

// quietRows are how busy the machine was around a run started on a quiet
// one (scenario.quiet).
var quietRows = []row{
	{key: "quiet_wait_s", label: "wait for a quiet machine before the run", unit: "s"},
	{key: "busy_cores", label: "machine's cores busy during the run", unit: "cores"},
	{key: "steal_cores", label: "cores stolen by the hypervisor during the run", unit: "cores"},
}

var floorRows = []row{
	{key: "create_s", label: "create N Pods (parallel)", unit: "s"},
	{key: "create_per_s", label: "create throughput", unit: "/s"},
	{key: "ready_all_s", label: "all N Ready (floor, measured)", unit: "s"},
	{key: "floor_formula_s", label: "N ÷ throughput + ready delay (floor, formula)", unit: "s"},
	{key: "patch_serial_p50_ms", label: "label patch, serial, p50", unit: "ms"},
	{key: "patch_serial_p99_ms", label: "label patch, serial, p99", unit: "ms"},
	{key: "patch_concurrent_p50_ms", label: "label patch, A at once, p50", unit: "ms"},
	{key: "patch_concurrent_p99_ms", label: "label patch, A at once, p99", unit: "ms"},
	{key: "patch_loaded_p50_ms", label: "N label patches, A at a time, during N creations, p50", unit: "ms"},
	{key: "patch_loaded_p99_ms", label: "N label patches, A at a time, during N creations, p99", unit: "ms"},
	{key: "patch_rate_p50_ms", label: "label patches at R/s, each followed by a creation, p50", unit: "ms"},
	{key: "patch_rate_p99_ms", label: "label patches at R/s, each followed by a creation, p99", unit: "ms"},
	{key: "patch_rate_nop_p50_ms", label: "the same through a webhook that does nothing, p50", unit: "ms"},
	{key: "patch_rate_nop_p99_ms", label: "the same through a webhook that does nothing, p99", unit: "ms"},
	{key: "patch_rate_busy_cores", label: "label patches at R/s: machine's cores busy", unit: "cores"},
	{key: "patch_rate_apiserver_cpu_ms_per_patch", label: "label patches at R/s: kube-apiserver CPU per patch and creation", unit: "ms"},
	{key: "patch_rate_nop_busy_cores", label: "… through the webhook that does nothing: machine's cores busy", unit: "cores"},
	{key: "patch_rate_nop_apiserver_cpu_ms_per_patch", label: "… through the webhook that does nothing: kube-apiserver CPU per patch and creation", unit: "ms"},
	{key: "apiserver_cpu_s", label: "kube-apiserver CPU", unit: "s"},
}

var expiryRows = []row{
	{key: "sandboxes", label: "claimed sandboxes", unit: "n"},
	{key: "idle_manager_cpu_per_s", label: "manager CPU while all wait, none due", unit: "cores"},
	{key: "idle_apiserver_cpu_per_s", label: "kube-apiserver CPU meanwhile", unit: "cores"},
	{key: "lateness_p50_ms", label: "lateness p50 (shutdown time to deletion seen)", unit: "ms"},
	{key: "lateness_p99_ms", label: "lateness p99", unit: "ms"},
	{key: "lateness_max_ms", label: "lateness max", unit: "ms"},
	{key: "early", label: "deleted before their shutdown time", unit: "n"},
}

var rssRows = []row{
	{key: "pool_pods", label: "pool Pods", unit: "n"},
	{key: "other_cached_pods", label: "other labelled Pods the manager caches (benchmark pool, claimed)", unit: "n"},
	{key: "available", label: "available at the end", unit: "n"},
	{key: "time_to_all_s", label: "time to all available", unit: "s"},
	{key: "ctrl_rss_mib", label: "manager RSS", unit: "MiB"},
	{key: "ctrl_peak_rss_mib", label: "manager peak RSS", unit: "MiB"},
	{key: "ctrl_rss_before_mib", label: "manager RSS before the fill", unit: "MiB"},
	{key: "ctrl_rss_kib_per_pod", label: "manager RSS per pool Pod", unit: "KiB"},
	{key: "ctrl_heap_mib", label: "manager Go heap in use", unit: "MiB"},
	{key: "ctrl_heap_before_mib", label: "manager Go heap in use before the fill", unit: "MiB"},
	{key: "ctrl_heap_kib_per_pod", label: "manager Go heap per pool Pod", unit: "KiB"},
	{key: "ctrl_cpu_s", label: "manager CPU", unit: "s"},
	{key: "apiserver_cpu_s", label: "kube-apiserver CPU", unit: "s"},
	{key: "spread_claims", label: "claims spread over the pools (-rss10k-claim-rate)", unit: "n"},
	{key: "spread_pickers", label: "  through watches of the pools (-rss10k-pickers, -rss10k-watch)", unit: "n"},
	{key: "spread_quiet_wait_s", label: "  wait for a quiet machine before the claims", unit: "s"},
	{key: "spread_busy_cores", label: "  machine's cores busy during the claims", unit: "cores"},
	{key: "spread_steal_cores", label: "  cores stolen by the hypervisor during the claims", unit: "cores"},
	{key: "spread_bench_cores", label: "  of the busy cores, the benchmark's own (agents, pickers)", unit: "cores"},
	{key: "spread_claim_p50_ms", label: "  claim latency p50", unit: "ms"},
	{key: "spread_claim_p99_ms", label: "  claim latency p99", unit: "ms"},
	{key: "spread_floor_p50_ms", label: "  floor: label patches at the claim rate, each followed by a creation, p50", unit: "ms"},
	{key: "spread_floor_p99_ms", label: "  floor: the same, p99", unit: "ms"},
	{key: "spread_floor_nop_p50_ms", label: "  floor through a webhook that does nothing, p50", unit: "ms"},
	{key: "spread_floor_nop_p99_ms", label: "  floor through a webhook that does nothing, p99", unit: "ms"},
	{key: "spread_floor_busy_cores", label: "  floor: machine's cores busy", unit: "cores"},
	{key: "spread_floor_apiserver_cpu_ms_per_patch", label: "  floor: kube-apiserver CPU per patch and creation", unit: "ms"},
	{key: "spread_floor_nop_busy_cores", label: "  floor through the webhook that does nothing: machine's cores busy", unit: "cores"},
	{key: "spread_floor_nop_apiserver_cpu_ms_per_patch", label: "  floor through the webhook that does nothing: kube-apiserver CPU per patch and creation", unit: "ms"},
	{key: "spread_claim_p50_per_floor", label: "  claim p50 ÷ floor", unit: "×"},
	{key: "spread_claim_p99_per_floor", label: "  claim p99 ÷ floor", unit: "×"},
	{key: "spread_claim_p50_per_nop_floor", label: "  claim p50 ÷ floor through a webhook that does nothing", unit: "×"},
	{key: "spread_claim_p99_per_nop_floor", label: "  claim p99 ÷ floor through a webhook that does nothing", unit: "×"},
	{key: "spread_warm_fraction", label: "  served warm", unit: "%"},
	{key: "spread_ctrl_cpu_ms_per_claim", label: "  manager CPU per claim won", unit: "ms"},
	{key: "spread_apiserver_cpu_ms_per_claim", label: "  kube-apiserver CPU per claim won", unit: "ms"},
	{key: "spread_pool_writes_per_claim", label: "  pool-level writes per claim won (status, spec, the pool's events)", unit: "x"},
	{key: "spread_write_pool_status_per_claim", label: "    pool status writes", unit: "x"},
	{key: "spread_pool_events_per_claim", label: "    events about the pools", unit: "x"},
	{key: "spread_api_writes_per_claim", label: "  API writes per claim won, all", unit: "x"},
	{key: "spread_adm_plugin_MutatingAdmissionWebhook_ms_per_claim", label: "  mutating webhooks per claim won", unit: "ms"},
	{key: "spread_replacement_mean_ms", label: "  claim → replacement created, mean", unit: "ms"},
	{key: "spread_replacement_p99_ms", label: "  claim → replacement created, p99 (estimated)", unit: "ms"},
	{key: "spread_stage_seen_p99_ms", label: "  claim → the manager's watch delivers it, p99 (estimated)", unit: "ms"},
	{key: "spread_stage_reconciling_p99_ms", label: "  claim → the pass that replaces it starts, p99 (estimated)", unit: "ms"},
	{key: "spread_pass_mean_ms", label: "  a pass, mean", unit: "ms"},
	{key: "spread_flow_sandboxset-refill_mean_ms", label: "  manager's Pod writes queued in APF, mean", unit: "ms"},
	{key: "spread_seats_sandboxset-refill_mean", label: "  seats per manager's Pod write, mean", unit: "x"},
	{key: "spread_watchers_sandboxset-refill_mean", label: "  watches a manager's Pod write notifies, mean", unit: "x"},
	{key: "spread_ctrl_rss_mib", label: "  manager RSS after the claims", unit: "MiB"},
	{key: "spread_double_claims", label: "  Pods won by two claims", unit: "n"},
}

// fmtValue formats one number in its unit.
func fmtValue(v float64, unit string) string {
	if math.IsNaN(v) {
		return "–"
	}
	switch unit {
	case "%":
		return fmt.Sprintf("%.0f%%", 100*v)
	case "n":
		return fmt.Sprintf("%.0f", v)
	case "ms":
		if v >= 100 {
			return fmt.Sprintf("%.0f", v)
		}
		return fmt.Sprintf("%.1f", v)
	case "MiB", "/s":
		return fmt.Sprintf("%.0f", v)
	case "x":
		return fmt.Sprintf("%.2f", v)
	case "×":
		return fmt.Sprintf("%.2f×", v)
	case "cores":
		return fmt.Sprintf("%.3f", v)
	}
	return fmt.Sprintf("%.2f", v)
}

// fmtSpread is "median (min–max)", or the median alone when the runs agree
// or there was one.
func fmtSpread(s spread, unit string) string {
	med := fmtValue(s.Median, unit)
	if s.N < 2 {
		return med
	}
	lo, hi := fmtValue(s.Min, unit), fmtValue(s.Max, unit)
	if lo == hi {
		return med
	}
	return fmt.Sprintf("%s (%s–%s)", med, lo, hi)
}

func fmtRatio(a, b float64) string {
	if math.IsNaN(a) || math.IsNaN(b) || b == 0 {
		return "–"
	}
	return fmt.Sprintf("%.2f×", a/b)
}

func fmtDiff(a, b float64, unit string) string {
	if math.IsNaN(a) || math.IsNaN(b) {
		return "–"
	}
	return fmt.Sprintf("%+.1f %s", a-b, unit)
}

func unitSuffix(unit string) string {
	switch unit {
	case "n", "%", "x", "×":
		return ""
	case "/s":
		return " (/s)"
	}
	return " (" + unit + ")"
}

// printTables writes the human report: parameters, the floor, one table
// per scenario with metric | sandboxset | replicaset | ratio.
func (r *results) printTables(w io.Writer) {
	p := r.Params
	fmt.Fprintf(w, "\nSandboxSet vs ReplicaSet warm pool — %s\n", r.StartedAt.Format(time.RFC3339))
	fmt.Fprintf(w, "machine: %d CPUs, %s, %d MiB, Linux %s, %s, load at start %s\n",
		r.Machine.CPUs, r.Machine.CPUModel, r.Machine.MemTotalMiB, r.Machine.Kernel, r.Machine.GoVersion, r.Machine.LoadAvg)
	fmt.Fprintf(w, "cluster: kwok, %d nodes, profile %s, Pods Ready %s after binding\n", p.Nodes, p.Profile, p.ReadyDelay)
	if p.ManagerMemoryLimitMiB > 0 {
		fmt.Fprintf(w, "manager: as in a container with a %d MiB memory limit (GOMEMLIMIT at 90%%)\n", p.ManagerMemoryLimitMiB)
	}
	fmt.Fprintf(w, "N=%d  agents A=%d  sustained %g/s for %s  template-change load %g/s  repeat %d (median (min–max))\n",
		p.N, p.Agents, p.Rate, p.Duration, p.TemplateRate, p.Repeat)
	fmt.Fprintf(w, "claims: %s\n", map[string]string{
		claimPicker: "both systems' agents pick from one shared watch of their pool (sandboxset: claim.Picker)",
		claimList:   "both systems' agents list the pool on every try (sandboxset: claim.Client.Claim)"}[p.Claim])

	floor := map[string]spread{}
	if r.Floor != nil {
		floor = r.Floor.Summary
		printSingleRuns(w, fmt.Sprintf("The floor: a raw loop straight against the API server (N=%d, %d creates in parallel, A=%d)", p.N, p.CreateParallelism, p.Agents),
			"floor", floorRows, r.Floor)
	}
	for _, s := range r.Scenarios {
		fmt.Fprintf(w, "\n== %s ==\n", s.Title)
		r.printScenario(w, s, floor)
	}
	if r.Expiry != nil {
		printSingleRuns(w, fmt.Sprintf("Expiry: %d claimed sandboxes, shutdown times over %s (SandboxSet only)", p.ExpirySandboxes, p.ExpirySpread),
			"expiry", expiryRows, r.Expiry)
	}
	if r.RSS10k != nil {
		printSingleRuns(w, fmt.Sprintf("Manager memory with %d pool Pods", p.RSSPods), "rss10k", rssRows, r.RSS10k)
	}
	r.TraceReplay.printTables(w)
	for _, e := range r.Errors {
		fmt.Fprintf(w, "error: %s\n", e)
	}
}

// printSingleRuns writes a table of one-system measurements, one row each.
func printSingleRuns(w io.Writer, title, key string, rows []row, x *runs) {
	fmt.Fprintf(w, "\n== %s ==\n", title)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "metric\tvalue\t")
	// The HTML report's table, without its columns per run.
	for _, cells := range runsTable(rows, x).Rows {
		fmt.Fprintf(tw, "%s\t%s\t\n", cells[0], cells[len(cells)-1])
	}
	_ = tw.Flush()
	printIssues(w, key, x)
}

func (r *results) printScenario(w io.Writer, s *scenarioResult, floor map[string]spread) {
	sbs, rs := s.Systems[sysSandboxSet], s.Systems[sysReplicaSet]
	sum := func(x *runs, key string) spread {
		if x == nil || x.Summary == nil {
			return spread{Median: math.NaN(), Min: math.NaN(), Max: math.NaN()}
		}
		if v, ok := x.Summary[key]; ok {
			return v
		}
		return spread{Median: math.NaN(), Min: math.NaN(), Max: math.NaN()}
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "metric\tsandboxset\treplicaset\tsbs/rs\t")
	for _, row := range tableRows(s.Key) {
		a, b := sum(sbs, row.key), sum(rs, row.key)
		if math.IsNaN(a.Median) && math.IsNaN(b.Median) {
			continue // not a figure of this scenario
		}
		if row.floorKey == "" {
			fmt.Fprintf(tw, "%s%s\t%s\t%s\t%s\t\n", row.label, unitSuffix(row.unit),
				fmtSpread(a, row.unit), fmtSpread(b, row.unit), fmtRatio(a.Median, b.Median))
			continue
		}
		f, ok := floor[row.floorKey]
		if !ok {
			if !row.floorDiff && !rowPrinted(s.Key, row) {
				fmt.Fprintf(tw, "%s%s\t%s\t%s\t%s\t\n", row.label, unitSuffix(row.unit),
					fmtSpread(a, row.unit), fmtSpread(b, row.unit), fmtRatio(a.Median, b.Median))
			}
			continue
		}
		floorName := floorLabelOf(row.floorKey)
		if row.floorDiff {
			fmt.Fprintf(tw, "  − floor %s = %s\t%s\t%s\t\t\n", floorName, fmtValue(f.Median, row.unit),
				fmtDiff(a.Median, f.Median, row.unit), fmtDiff(b.Median, f.Median, row.unit))
			continue
		}
		// The plain row once, then its comparison with each floor.
		if !rowPrinted(s.Key, row) {
			fmt.Fprintf(tw, "%s%s\t%s\t%s\t%s\t\n", row.label, unitSuffix(row.unit),
				fmtSpread(a, row.unit), fmtSpread(b, row.unit), fmtRatio(a.Median, b.Median))
		}
		fmt.Fprintf(tw, "  ÷ floor %s = %s\t%s\t%s\t\t\n", floorName, fmtValue(f.Median, row.unit),
			fmtRatio(a.Median, f.Median), fmtRatio(b.Median, f.Median))
	}
	_ = tw.Flush()
	printIssues(w, sysSandboxSet, sbs)
	printIssues(w, sysReplicaSet, rs)
}

// rowPrinted says whether an earlier row of the table has the same metric,
// so a metric compared with two floors prints its values once.
func rowPrinted(key string, r row) bool {
	for _, prev := range tableRows(key) {
		if prev == r {
			return false
		}
		if prev.key == r.key && prev.floorKey != "" {
			return true
		}
	}
	return false
}

func floorLabelOf(key string) string {
	switch {
	case key == "ready_all_s":
		return "(raw loop, all Ready)"
	case key == "floor_formula_s":
		return "(N ÷ create rate + ready delay)"
	case strings.HasPrefix(key, "patch_serial"):
		return "(serial label patch)"
	case strings.HasPrefix(key, "patch_concurrent"):
		return "(A label patches at once)"
	case strings.HasPrefix(key, "patch_loaded"):
		return "(label patches, A at a time, during creations)"
	case strings.HasPrefix(key, "patch_rate_nop"):
		return "(the same through a webhook that does nothing)"
	case strings.HasPrefix(key, "patch_rate"):
		return "(label patches at R/s, each followed by a creation)"
	}
	return key
}

func printIssues(w io.Writer, who string, x *runs) {
	if x == nil {
		return
	}
	for _, n := range x.Notes {
		fmt.Fprintf(w, "  note (%s): %s\n", who, n)
	}
	for _, e := range x.Errors {
		fmt.Fprintf(w, "  ERROR (%s): %s\n", who, e)
	}
}
