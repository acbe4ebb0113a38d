package main

import (
	"strings"
)

// Where an update's admission time goes, by the API server's own metrics:
// each admission step (mutating, validating), each admission plugin, and
// each ValidatingAdmissionPolicy, for UPDATE requests, which are the
// claims, the manager's relabels and the kubelet's status writes.
const (
	admissionStep       = "apiserver_admission_step_admission_duration_seconds_"
	admissionController = "apiserver_admission_controller_admission_duration_seconds_"
	policyCheck         = "apiserver_validating_admission_policy_check_duration_seconds_"
)

// admissionPlugins are the plugins a table row is kept for.
var admissionPlugins = []string{"MutatingAdmissionWebhook", "ValidatingAdmissionWebhook", "ValidatingAdmissionPolicy", "PodSecurity"}

// addAdmission adds, from a metrics body, adm_step_<type>_{seconds,calls},
// adm_plugin_<name>_{seconds,calls} (UPDATE only) and
// adm_policy_<policy>_{seconds,calls}.
func addAdmission(out counters, body []byte) error {
	err := promLines(body, admissionStep, func(suffix, labels string, v float64) {
		if labelValue(labels, "operation") == "UPDATE" {
			addSumCount(out, "adm_step_"+labelValue(labels, "type"), suffix, v)
		}
	})
	if err != nil {
		return err
	}
	err = promLines(body, admissionController, func(suffix, labels string, v float64) {
		if labelValue(labels, "operation") == "UPDATE" {
			addSumCount(out, "adm_plugin_"+labelValue(labels, "name"), suffix, v)
		}
	})
	if err != nil {
		return err
	}
	return promLines(body, policyCheck, func(suffix, labels string, v float64) {
		addSumCount(out, "adm_policy_"+labelValue(labels, "policy"), suffix, v)
	})
}

// admissionFigures sets, from a run's delta, the admission time per claim
// won (adm_<...>_ms_per_claim) for every step, plugin and policy seen, and
// the mean per call of each (adm_<...>_mean_ms).
func admissionFigures(m metrics, d counters) {
	won := m.get("claims_ok")
	for k := range d {
		key, ok := strings.CutSuffix(k, "_seconds")
		if !ok || !strings.HasPrefix(key, "adm_") || d[key+"_calls"] == 0 {
			continue
		}
		meanMs(m, d, key)
		if won > 0 {
			m[key+"_ms_per_claim"] = 1000 * d[k] / won
		}
	}
}
