package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"k8s.io/client-go/kubernetes"
)

// What the API server and the manager count themselves, read from their
// Prometheus endpoints before and after each run: the Pod webhook's calls
// and time as the API server sees them (what the webhook adds to every
// write it judges), and the manager's own Pod writes by result and its
// claim-to-replacement time.
const (
	podWebhook      = "mpod.agents.kruise.io"
	webhookDuration = "apiserver_admission_webhook_admission_duration_seconds_"
	requestDuration = "apiserver_request_duration_seconds_"
	flowWait        = "apiserver_flowcontrol_request_wait_duration_seconds_"
	flowSeats       = "apiserver_flowcontrol_work_estimated_seats_"
	flowWatchers    = "apiserver_flowcontrol_watch_count_samples_"
	managerOps      = "sandboxset_pod_operations_total"
	managerRefill   = "sandboxset_claim_to_replacement_seconds_"
	managerHandler  = "controller_runtime_webhook_latency_seconds_"
	managerStages   = "sandboxset_claim_replacement_stage_seconds_"
	queueWait       = "workqueue_queue_duration_seconds_"
	passDuration    = "workqueue_work_duration_seconds_"
	podWebhookPath  = "/mutate--v1-pod"
)

// The API Priority and Fairness levels whose queueing a run reports: the
// agents' (and by default everyone's) and the manager's Pod writes'
// (config/flowcontrol).
var flowLevels = []string{"workload-low", "sandboxset-refill"}

// counters are running totals by key.
type counters map[string]float64

// promLines calls f for every sample line whose metric name starts with
// prefix, with the name after the prefix, the label text and the value.
func promLines(body []byte, prefix string, f func(suffix, labels string, v float64)) error {
	sc := bufio.NewScanner(bytes.NewReader(body))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), prefix)
		if !ok {
			continue
		}
		i := strings.LastIndexByte(rest, ' ')
		v, err := strconv.ParseFloat(rest[i+1:], 64)
		if i < 0 || err != nil {
			continue
		}
		suffix, labels, _ := strings.Cut(rest[:i], "{")
		f(suffix, labels, v)
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("reading metrics: %w", err)
	}
	return nil
}

// labelValue returns a label's value in a sample's label text.
func labelValue(labels, label string) string {
	_, after, ok := strings.Cut(labels, label+`="`)
	if !ok {
		return ""
	}
	v, _, _ := strings.Cut(after, `"`)
	return v
}

// webhookCounters reads, from the API server's histograms:
// webhook_<op>_seconds and webhook_<op>_calls for the Pod webhook;
// patch_seconds and patch_calls, the server time of Pod label patches
// (claims and the manager's relabels); and flow_<level>_seconds and
// flow_<level>_calls, the time requests waited in a priority level's
// queues; and, for each level, seats_<level> and watchers_<level>: the
// seats the API server reserved for its requests, and the watches each
// of its writes would notify. A write notifying ten watches or more takes
// a seat per ten, up to the level's cap, and holds them after it is done
// for 5 ms per ten, divided by the seats it holds (APF's mutating work
// estimate): watchers of a namespace's Pods make every Pod write in it
// wider.
func webhookCounters(ctx context.Context, cs kubernetes.Interface) (counters, error) {
	body, err := cs.CoreV1().RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
	if err != nil {
		return nil, fmt.Errorf("reading the API server's metrics: %w", err)
	}
	out := counters{}
	err = promLines(body, webhookDuration, func(suffix, labels string, v float64) {
		if labelValue(labels, "name") != podWebhook {
			return
		}
		addSumCount(out, "webhook_"+strings.ToLower(labelValue(labels, "operation")), suffix, v)
	})
	if err != nil {
		return nil, err
	}
	err = promLines(body, requestDuration, func(suffix, labels string, v float64) {
		if labelValue(labels, "verb") != "PATCH" || labelValue(labels, "resource") != "pods" || labelValue(labels, "subresource") != "" {
			return
		}
		addSumCount(out, "patch", suffix, v)
	})
	if err != nil {
		return nil, err
	}
	err = promLines(body, flowWait, func(suffix, labels string, v float64) {
		level := labelValue(labels, "priority_level")
		if slices.Contains(flowLevels, level) {
			addSumCount(out, "flow_"+level, suffix, v)
		}
	})
	if err != nil {
		return nil, err
	}
	for key, metric := range map[string]string{"seats_": flowSeats, "watchers_": flowWatchers} {
		err = promLines(body, metric, func(suffix, labels string, v float64) {
			if level := labelValue(labels, "priority_level"); slices.Contains(flowLevels, level) {
				addSumCount(out, key+level, suffix, v)
			}
		})
		if err != nil {
			return nil, err
		}
	}
	if err := addAdmission(out, body); err != nil {
		return nil, err
	}
	return out, addAPIWrites(out, body)
}

// addSumCount adds a histogram's _sum to <key>_seconds and its _count to
// <key>_calls.
func addSumCount(out counters, key, suffix string, v float64) {
	switch suffix {
	case "sum":
		out[key+"_seconds"] += v
	case "count":
		out[key+"_calls"] += v
	}
}

// meanMs sets m[<key>_mean_ms] from a delta's <key>_seconds and <key>_calls.
func meanMs(m metrics, d counters, key string) {
	if calls := d[key+"_calls"]; calls > 0 {
		m[key+"_mean_ms"] = 1000 * d[key+"_seconds"] / calls
	}
}

// mean sets m[<key>_mean] from a delta's <key>_seconds (a histogram's sum,
// whatever its unit) and <key>_calls.
func mean(m metrics, d counters, key string) {
	if calls := d[key+"_calls"]; calls > 0 {
		m[key+"_mean"] = d[key+"_seconds"] / calls
	}
}

// managerCounters reads the manager's Pod writes (mgr_<operation>_<result>)
// and its claim-to-replacement totals from its metrics endpoint.
func managerCounters(ctx context.Context, addr string) (counters, error) {
	body, err := managerMetricsBody(ctx, addr)
	if err != nil {
		return nil, err
	}
	out := counters{}
	err = promLines(body, managerOps, func(_, labels string, v float64) {
		out["mgr_"+labelValue(labels, "operation")+"_"+labelValue(labels, "result")] += v
	})
	if err != nil {
		return nil, err
	}
	err = promLines(body, managerRefill, func(suffix, labels string, v float64) {
		addSumCount(out, "replacement", suffix, v)
		if suffix == "bucket" {
			out[replacementBucket+labelValue(labels, "le")] += v
		}
	})
	if err != nil {
		return nil, err
	}
	err = promLines(body, managerHandler, func(suffix, labels string, v float64) {
		if labelValue(labels, "webhook") == podWebhookPath {
			addSumCount(out, "handler", suffix, v)
		}
	})
	if err != nil {
		return nil, err
	}
	err = promLines(body, managerStages, func(suffix, labels string, v float64) {
		stage := "stage_" + labelValue(labels, "stage")
		addSumCount(out, stage, suffix, v)
		if suffix == "bucket" {
			out[stage+"_bucket_"+labelValue(labels, "le")] += v
		}
	})
	if err != nil {
		return nil, err
	}
	// The SandboxSet controller's work queue: how long a pool waited to be
	// picked up, and how long its passes took.
	for prefix, key := range map[string]string{queueWait: "queue_wait", passDuration: "pass"} {
		err = promLines(body, prefix, func(suffix, labels string, v float64) {
			if labelValue(labels, "name") == "sandboxset" {
				addSumCount(out, key, suffix, v)
			}
		})
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

// managerMetricsBody reads the manager's metrics endpoint.
func managerMetricsBody(ctx context.Context, addr string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/metrics", nil)
	if err != nil {
		return nil, fmt.Errorf("reading the manager's metrics: %w", err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("reading the manager's metrics: %w", err)
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("reading the manager's metrics: %w", err)
	}
	return body, nil
}

// managerGauge reads one unlabelled sample from the manager's metrics.
func managerGauge(ctx context.Context, addr, name string) (float64, error) {
	body, err := managerMetricsBody(ctx, addr)
	if err != nil {
		return 0, err
	}
	value, found := 0.0, false
	err = promLines(body, name, func(suffix, _ string, v float64) {
		if suffix == "" {
			value, found = v, true
		}
	})
	if err == nil && !found {
		err = fmt.Errorf("the manager's metrics have no %s", name)
	}
	return value, err
}

// claimStageNames are the stages of the manager's claim-to-replacement
// histogram, in order.
var claimStageNames = []string{"seen", "reconciling", "created"}

// selfMeter takes the two endpoints' counters over one run, and the events
// recorded about the pools in its namespace.
type selfMeter struct {
	cs          kubernetes.Interface
	managerAddr string
	ns          string
	hooks, mgr  counters
	events      float64
	eventsOK    bool
}

func startSelfMeter(ctx context.Context, cs kubernetes.Interface, managerAddr, ns string) *selfMeter {
	m := &selfMeter{cs: cs, managerAddr: managerAddr, ns: ns}
	var err error
	if m.hooks, err = webhookCounters(ctx, cs); err != nil {
		logf("warning: %v; the webhook's latency and the API writes are not reported", err)
	}
	if m.mgr, err = managerCounters(ctx, managerAddr); err != nil {
		logf("warning: %v; the manager's writes are not reported", err)
	}
	if m.events, err = poolEvents(ctx, cs, ns); err != nil {
		logf("warning: %v; the pool's events are not reported", err)
	}
	m.eventsOK = err == nil
	return m
}

// stop adds the deltas: webhook_<op>_calls and webhook_<op>_mean_ms;
// patch_mean_ms, the API server's mean time per Pod label patch;
// flow_<level>_mean_ms, the mean queueing in a priority level;
// seats_<level>_mean and watchers_<level>_mean, its requests' mean width
// and its writes' mean watch count;
// mgr_<operation>_<result>, mgr_writes and mgr_writes_refused;
// replacement_mean_ms, the manager's mean time from a claim to its
// replacement's creation; and handler_mean_ms, the manager's own time per
// Pod webhook call, the part of the webhook's latency spent in it.
func (s *selfMeter) stop(ctx context.Context, m metrics) {
	if s.hooks != nil {
		if after, err := webhookCounters(ctx, s.cs); err == nil {
			d := delta(s.hooks, after)
			for _, op := range []string{"create", "update"} {
				m["webhook_"+op+"_calls"] = d["webhook_"+op+"_calls"]
				meanMs(m, d, "webhook_"+op)
			}
			meanMs(m, d, "patch")
			for _, level := range flowLevels {
				meanMs(m, d, "flow_"+level)
				mean(m, d, "seats_"+level)
				mean(m, d, "watchers_"+level)
			}
			apiWriteFigures(m, d)
			admissionFigures(m, d)
		}
	}
	if s.eventsOK {
		if after, err := poolEvents(ctx, s.cs, s.ns); err == nil {
			poolWriteFigures(m, after-s.events)
		}
	}
	if s.mgr != nil {
		if after, err := managerCounters(ctx, s.managerAddr); err == nil {
			d := delta(s.mgr, after)
			var writes, refused float64
			for k, v := range d {
				if !strings.HasPrefix(k, "mgr_") {
					continue
				}
				m[k] = v
				writes += v
				if !strings.HasSuffix(k, "_success") {
					refused += v
				}
			}
			m["mgr_writes"], m["mgr_writes_refused"] = writes, refused
			meanMs(m, d, "replacement")
			if p99, ok := histogramQuantile(0.99, buckets(d, replacementBucket)); ok {
				m["replacement_p99_ms"] = 1000 * p99
			}
			for _, stage := range claimStageNames {
				key := "stage_" + stage
				meanMs(m, d, key)
				if p99, ok := histogramQuantile(0.99, buckets(d, key+"_bucket_")); ok {
					m[key+"_p99_ms"] = 1000 * p99
				}
			}
			meanMs(m, d, "queue_wait")
			meanMs(m, d, "pass")
			if won := m.get("claims_ok"); won > 0 && d["pass_calls"] > 0 {
				m["passes_per_claim"] = d["pass_calls"] / won
			}
			meanMs(m, d, "handler")
		}
	}
}

func delta(before, after counters) counters {
	out := counters{}
	for k, v := range after {
		out[k] = v - before[k]
	}
	return out
}
