package main

import (
	"strconv"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

func TestAPIWriteFigures(t *testing.T) {
	before, after := counters{}, counters{}
	if err := addAPIWrites(before, []byte(`apiserver_request_total{code="201",component="apiserver",dry_run="",group="",resource="pods",scope="resource",subresource="",verb="POST",version="v1"} 10
apiserver_request_total{code="200",component="apiserver",dry_run="",group="",resource="pods",scope="resource",subresource="",verb="GET",version="v1"} 500
`)); err != nil {
		t.Fatal(err)
	}
	if err := addAPIWrites(after, []byte(`apiserver_request_total{code="201",component="apiserver",dry_run="",group="",resource="pods",scope="resource",subresource="",verb="POST",version="v1"} 30
apiserver_request_total{code="200",component="apiserver",dry_run="",group="",resource="pods",scope="resource",subresource="",verb="GET",version="v1"} 900
apiserver_request_total{code="200",component="apiserver",dry_run="",group="",resource="pods",scope="resource",subresource="",verb="PATCH",version="v1"} 40
apiserver_request_total{code="200",component="apiserver",dry_run="All",group="",resource="pods",scope="resource",subresource="",verb="PATCH",version="v1"} 7
apiserver_request_total{code="201",component="apiserver",dry_run="",group="",resource="pods",scope="resource",subresource="binding",verb="POST",version="v1"} 20
apiserver_request_total{code="200",component="apiserver",dry_run="",group="agents.kruise.io",resource="sandboxsets",scope="resource",subresource="status",verb="PATCH",version="v1alpha1"} 5
apiserver_request_total{code="201",component="apiserver",dry_run="",group="events.k8s.io",resource="events",scope="resource",subresource="",verb="POST",version="v1"} 25
apiserver_request_total{code="200",component="apiserver",dry_run="",group="coordination.k8s.io",resource="leases",scope="resource",subresource="",verb="PUT",version="v1"} 3
`)); err != nil {
		t.Fatal(err)
	}
	m := metrics{"claims_ok": 20}
	apiWriteFigures(m, delta(before, after))
	poolWriteFigures(m, 4)
	want := map[string]float64{
		"api_writes":                  20 + 40 + 20 + 5 + 25 + 3, // reads and the dry run left out
		"api_writes_per_claim":        113.0 / 20,
		"write_pod_create_per_claim":  1,
		"write_pod_label_per_claim":   2,
		"write_pod_bind_per_claim":    1,
		"write_pool_status_per_claim": 0.25,
		"write_events_per_claim":      1.25,
		"write_pod_delete_per_claim":  0,
		"pool_events":                 4,
		"pool_events_per_claim":       0.2,
		"pool_writes_per_claim":       0.25 + 0.2,
	}
	for k, v := range want {
		if got := m.get(k); got != v {
			t.Errorf("%s = %v, want %v", k, got, v)
		}
	}
}

func TestEventWrites(t *testing.T) {
	for _, tc := range []struct {
		name  string
		event corev1.Event
		want  float64
	}{
		{"a new event", corev1.Event{}, 1},
		{"a core event counted 5 times", corev1.Event{Count: 5}, 5},
		{"an events.k8s.io series", corev1.Event{Count: 1, Series: &corev1.EventSeries{Count: 40}}, 2},
	} {
		if got := eventWrites(tc.event); got != tc.want {
			t.Errorf("%s: eventWrites = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestAdmissionFigures(t *testing.T) {
	body := func(scale float64) []byte {
		return []byte(strings.NewReplacer("S", strconv.FormatFloat(0.5*scale, 'f', -1, 64), "C", strconv.FormatFloat(100*scale, 'f', -1, 64)).Replace(
			`apiserver_admission_step_admission_duration_seconds_sum{operation="UPDATE",rejected="false",type="validate"} S
apiserver_admission_step_admission_duration_seconds_count{operation="UPDATE",rejected="false",type="validate"} C
apiserver_admission_step_admission_duration_seconds_sum{operation="CREATE",rejected="false",type="validate"} 99
apiserver_admission_controller_admission_duration_seconds_sum{name="ValidatingAdmissionPolicy",operation="UPDATE",rejected="false",type="validate"} S
apiserver_admission_controller_admission_duration_seconds_count{name="ValidatingAdmissionPolicy",operation="UPDATE",rejected="false",type="validate"} C
apiserver_validating_admission_policy_check_duration_seconds_sum{enforcement_action="allow",error_type="no_error",policy="pool-pods",policy_binding="b"} S
apiserver_validating_admission_policy_check_duration_seconds_count{enforcement_action="allow",error_type="no_error",policy="pool-pods",policy_binding="b"} C
`))
	}
	before, after := counters{}, counters{}
	if err := addAdmission(before, body(1)); err != nil {
		t.Fatal(err)
	}
	if err := addAdmission(after, body(3)); err != nil {
		t.Fatal(err)
	}
	m := metrics{"claims_ok": 50}
	admissionFigures(m, delta(before, after))
	for k, want := range map[string]float64{
		"adm_step_validate_mean_ms":                    5, // 1 s over 200 calls
		"adm_step_validate_ms_per_claim":               20,
		"adm_plugin_ValidatingAdmissionPolicy_mean_ms": 5,
		"adm_policy_pool-pods_ms_per_claim":            20,
	} {
		if got := m.get(k); got != want {
			t.Errorf("%s = %v, want %v", k, got, want)
		}
	}
	if _, ok := m["adm_step_admit_mean_ms"]; ok {
		t.Error("a step with no calls has no mean")
	}
}
