package main

import (
	"context"
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// What a claim cycle costs the API server in writes: the API server's own
// request counter (apiserver_request_total) by verb and resource, read
// before and after a run, and divided by the claims the run won. A claim
// cycle is the claim's label patch and everything it sets off: the
// replacement's creation, binding and status, the manager's relabel, the
// pool's status and events.
const requestTotal = "apiserver_request_total"

// writeVerbs are the verbs of apiserver_request_total that write.
var writeVerbs = map[string]bool{"POST": true, "PUT": true, "PATCH": true, "DELETE": true, "DELETECOLLECTION": true, "APPLY": true}

// writeKind is a row of the per-claim write table: the resources (as
// resource or resource/subresource) and verbs it counts.
type writeKind struct {
	key, label string
	match      func(resource, verb string) bool
}

// on matches writes to resource by any of verbs, or by any verb if none.
func on(resource string, verbs ...string) func(string, string) bool {
	return func(r, v string) bool {
		return r == resource && (len(verbs) == 0 || slices.Contains(verbs, v))
	}
}

// writeKinds are the kinds of write a claim cycle makes; other counts the
// rest (leader election, ledgers, the benchmark's own bookkeeping).
var writeKinds = []writeKind{
	{"pod_label", "Pod patches and updates (claims, relabels)", on("pods", "PATCH", "PUT", "APPLY")},
	{"pod_create", "Pod creations", on("pods", "POST")},
	{"pod_bind", "Pod bindings (scheduler)", on("pods/binding")},
	{"pod_status", "Pod status writes (kubelet)", on("pods/status")},
	{"pod_delete", "Pod deletions", on("pods", "DELETE", "DELETECOLLECTION")},
	{"pool_status", "SandboxSet and ReplicaSet status writes", func(r, _ string) bool {
		return r == "sandboxsets/status" || r == "replicasets/status"
	}},
	{"pool_spec", "SandboxSet and ReplicaSet spec writes", func(r, _ string) bool { return r == "sandboxsets" || r == "replicasets" }},
	{"events", "Events written, any object", func(r, _ string) bool { return r == "events" }},
}

// addAPIWrites adds apiserver_request_total's write counts from a metrics
// body, as api_<resource>[/<subresource>]_<verb>, dry runs left out.
func addAPIWrites(out counters, body []byte) error {
	return promLines(body, requestTotal, func(_, labels string, v float64) {
		verb := labelValue(labels, "verb")
		if !writeVerbs[verb] || labelValue(labels, "dry_run") != "" {
			return
		}
		resource := labelValue(labels, "resource")
		if sub := labelValue(labels, "subresource"); sub != "" {
			resource += "/" + sub
		}
		out["api_"+resource+"_"+verb] += v
	})
}

// apiWriteFigures sets, from a run's delta, api_writes and, per claim the
// run won, api_writes_per_claim and write_<kind>_per_claim.
func apiWriteFigures(m metrics, d counters) {
	var total float64
	byKind := map[string]float64{}
	for k, v := range d {
		rest, ok := strings.CutPrefix(k, "api_")
		if !ok || v == 0 {
			continue
		}
		i := strings.LastIndexByte(rest, '_')
		resource, verb := rest[:i], rest[i+1:]
		total += v
		for _, kind := range writeKinds {
			if kind.match(resource, verb) {
				byKind[kind.key] += v
				break
			}
		}
	}
	m["api_writes"] = total
	won := m.get("claims_ok")
	if !(won > 0) {
		return
	}
	m["api_writes_per_claim"] = total / won
	for _, kind := range writeKinds {
		m["write_"+kind.key+"_per_claim"] = byKind[kind.key] / won
	}
}

// poolEvents is how many writes the events about the namespace's pools
// (SandboxSets and ReplicaSets) took, by what is stored: each Event object
// was created once; an events.k8s.io series was written once more when it
// began (its later counts are written only every half hour); a core
// Event's count was written every time it grew.
func poolEvents(ctx context.Context, cs kubernetes.Interface, ns string) (float64, error) {
	var n float64
	for _, kind := range []string{"SandboxSet", "ReplicaSet"} {
		list, err := cs.CoreV1().Events(ns).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.kind=" + kind})
		if err != nil {
			return 0, fmt.Errorf("listing %s events in %s: %w", kind, ns, err)
		}
		for _, e := range list.Items {
			n += eventWrites(e)
		}
	}
	return n, nil
}

func eventWrites(e corev1.Event) float64 {
	if e.Series != nil {
		return 2
	}
	return float64(max(e.Count, 1))
}

// poolWriteFigures sets pool_events, the writes of events about the run's
// pools, and pool_writes_per_claim: those and the pools' status and spec
// writes, per claim won. The bound is one.
func poolWriteFigures(m metrics, events float64) {
	m["pool_events"] = events
	if won := m.get("claims_ok"); won > 0 {
		m["pool_events_per_claim"] = events / won
		m["pool_writes_per_claim"] = m.get("write_pool_status_per_claim") + m.get("write_pool_spec_per_claim") + events/won
	}
}
