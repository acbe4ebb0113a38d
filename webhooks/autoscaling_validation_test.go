package webhooks

import (
	"testing"
	"time"
	_ "time/tzdata" // the cases name zones; keep them independent of the host

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"

	agentsv1alpha1 "github.com/sandboxset/warmpool/api/v1alpha1"
)

// Each autoscaling rule's exact error, path and message as kubectl prints
// them: plain tests, without the envtest suite.
func TestValidateAutoscaling(t *testing.T) {
	valid := func() *agentsv1alpha1.AutoscalingSpec {
		return &agentsv1alpha1.AutoscalingSpec{
			TargetWarmRatio: "0.99",
			MinReplicas:     2,
			MaxReplicas:     50,
			ScaleDownDelay:  &metav1.Duration{Duration: 5 * time.Minute},
			Schedules: []agentsv1alpha1.AutoscalingSchedule{{
				Name: "weekdays", Days: []agentsv1alpha1.Weekday{agentsv1alpha1.Monday, agentsv1alpha1.Friday},
				Start: "08:00", End: "18:00", TimeZone: "Europe/Berlin", MinReplicas: 20,
			}},
		}
	}
	schedule := func(s *agentsv1alpha1.AutoscalingSpec) *agentsv1alpha1.AutoscalingSchedule { return &s.Schedules[0] }
	for _, tc := range []struct {
		name        string
		mutate      func(*agentsv1alpha1.AutoscalingSpec)
		replicasSet bool
		want        []string
	}{
		{name: "valid", mutate: func(*agentsv1alpha1.AutoscalingSpec) {}},
		{name: "a target of 1", mutate: func(s *agentsv1alpha1.AutoscalingSpec) { s.TargetWarmRatio = "1" }},
		{name: "no delay, a whole-day schedule across midnight in UTC", mutate: func(s *agentsv1alpha1.AutoscalingSpec) {
			s.ScaleDownDelay = &metav1.Duration{}
			*schedule(s) = agentsv1alpha1.AutoscalingSchedule{Name: "all-day", Start: "00:00", End: "00:00", MinReplicas: 50}
		}},
		{name: "replicas changed while autoscaling", mutate: func(*agentsv1alpha1.AutoscalingSpec) {}, replicasSet: true,
			want: []string{"spec.replicas: Forbidden: is set by the autoscaler while spec.autoscaling is present; change spec.autoscaling.minReplicas (2) or spec.autoscaling.maxReplicas (50) instead, or remove spec.autoscaling to size the pool by hand"}},
		{name: "no target", mutate: func(s *agentsv1alpha1.AutoscalingSpec) { s.TargetWarmRatio = "" },
			want: []string{`spec.autoscaling.targetWarmRatio: Required value: the fraction of claims to serve warm, e.g. "0.99"`}},
		{name: "a target of 0", mutate: func(s *agentsv1alpha1.AutoscalingSpec) { s.TargetWarmRatio = "0" },
			want: []string{`spec.autoscaling.targetWarmRatio: Invalid value: "0": must be a decimal greater than 0 and at most 1, e.g. "0.99" to serve 99 claims in 100 warm`}},
		{name: "a target above 1", mutate: func(s *agentsv1alpha1.AutoscalingSpec) { s.TargetWarmRatio = "1.5" },
			want: []string{`spec.autoscaling.targetWarmRatio: Invalid value: "1.5": must be a decimal greater than 0 and at most 1, e.g. "0.99" to serve 99 claims in 100 warm`}},
		{name: "a percentage", mutate: func(s *agentsv1alpha1.AutoscalingSpec) { s.TargetWarmRatio = "99%" },
			want: []string{`spec.autoscaling.targetWarmRatio: Invalid value: "99%": must be a decimal greater than 0 and at most 1, e.g. "0.99" to serve 99 claims in 100 warm`}},
		{name: "a negative minimum", mutate: func(s *agentsv1alpha1.AutoscalingSpec) { s.MinReplicas = -1 },
			want: []string{"spec.autoscaling.minReplicas: Invalid value: -1: must be 0 or more"}},
		{name: "a maximum of 0", mutate: func(s *agentsv1alpha1.AutoscalingSpec) { s.MaxReplicas = 0; schedule(s).MinReplicas = 0 },
			want: []string{"spec.autoscaling.maxReplicas: Invalid value: 0: must be 1 or more"}},
		{name: "min above max", mutate: func(s *agentsv1alpha1.AutoscalingSpec) { s.MinReplicas = 60 },
			want: []string{"spec.autoscaling.minReplicas: Invalid value: 60: must not be more than maxReplicas (50)"}},
		{name: "min equal to max", mutate: func(s *agentsv1alpha1.AutoscalingSpec) { s.MinReplicas = 50 }},
		{name: "a negative scale-down delay", mutate: func(s *agentsv1alpha1.AutoscalingSpec) { s.ScaleDownDelay = &metav1.Duration{Duration: -time.Minute} },
			want: []string{`spec.autoscaling.scaleDownDelay: Invalid value: "-1m0s": must be 0 or more, e.g. 5m; 0 shrinks the pool as soon as demand falls`}},
		{name: "a day spelt out, and a day twice", mutate: func(s *agentsv1alpha1.AutoscalingSpec) {
			schedule(s).Days = []agentsv1alpha1.Weekday{"Monday", agentsv1alpha1.Friday, agentsv1alpha1.Friday}
		}, want: []string{
			`spec.autoscaling.schedules[0].days[0]: Unsupported value: "Monday": supported values: "Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"`,
			`spec.autoscaling.schedules[0].days[2]: Duplicate value: "Fri"`,
		}},
		{name: "times that do not parse", mutate: func(s *agentsv1alpha1.AutoscalingSpec) { schedule(s).Start = "8am"; schedule(s).End = "24:00" },
			want: []string{
				`spec.autoscaling.schedules[0].start: Invalid value: "8am": must be a time of day as HH:MM on a 24-hour clock, e.g. 08:00 or 18:30`,
				`spec.autoscaling.schedules[0].end: Invalid value: "24:00": must be a time of day as HH:MM on a 24-hour clock, e.g. 08:00 or 18:30`,
			}},
		{name: "an unknown time zone", mutate: func(s *agentsv1alpha1.AutoscalingSpec) { schedule(s).TimeZone = "Europe/Atlantis" },
			want: []string{`spec.autoscaling.schedules[0].timeZone: Invalid value: "Europe/Atlantis": must be an IANA time zone name, e.g. Europe/Berlin, America/New_York or UTC (see the tz database's list)`}},
		{name: "the manager's own time zone", mutate: func(s *agentsv1alpha1.AutoscalingSpec) { schedule(s).TimeZone = "Local" },
			want: []string{`spec.autoscaling.schedules[0].timeZone: Invalid value: "Local": must be an IANA time zone name, e.g. Europe/Berlin, America/New_York or UTC (see the tz database's list)`}},
		{name: "a schedule floor above max", mutate: func(s *agentsv1alpha1.AutoscalingSpec) { schedule(s).MinReplicas = 80 },
			want: []string{"spec.autoscaling.schedules[0].minReplicas: Invalid value: 80: must not be more than maxReplicas (50), which caps every schedule; raise maxReplicas or lower this floor"}},
		{name: "a negative schedule floor", mutate: func(s *agentsv1alpha1.AutoscalingSpec) { schedule(s).MinReplicas = -3 },
			want: []string{"spec.autoscaling.schedules[0].minReplicas: Invalid value: -3: must be 0 or more"}},
		{name: "duplicate and missing schedule names", mutate: func(s *agentsv1alpha1.AutoscalingSpec) {
			s.Schedules = append(s.Schedules, s.Schedules[0], s.Schedules[0])
			s.Schedules[2].Name = ""
		}, want: []string{
			`spec.autoscaling.schedules[1].name: Duplicate value: "weekdays"`,
			"spec.autoscaling.schedules[2].name: Required value: every schedule needs a name, e.g. weekdays",
		}},
		{name: "a name that is not a DNS label", mutate: func(s *agentsv1alpha1.AutoscalingSpec) { schedule(s).Name = "Week Days" },
			want: []string{`spec.autoscaling.schedules[0].name: Invalid value: "Week Days": a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')`}},
		{name: "everything at once is reported at once", mutate: func(s *agentsv1alpha1.AutoscalingSpec) {
			s.TargetWarmRatio, s.MinReplicas, s.MaxReplicas = "2", 9, 3
			schedule(s).TimeZone = "Nowhere"
		}, want: []string{
			`spec.autoscaling.targetWarmRatio: Invalid value: "2": must be a decimal greater than 0 and at most 1, e.g. "0.99" to serve 99 claims in 100 warm`,
			"spec.autoscaling.minReplicas: Invalid value: 9: must not be more than maxReplicas (3)",
			`spec.autoscaling.schedules[0].timeZone: Invalid value: "Nowhere": must be an IANA time zone name, e.g. Europe/Berlin, America/New_York or UTC (see the tz database's list)`,
			"spec.autoscaling.schedules[0].minReplicas: Invalid value: 20: must not be more than maxReplicas (3), which caps every schedule; raise maxReplicas or lower this floor",
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			spec := valid()
			tc.mutate(spec)
			var got []string
			for _, err := range validateAutoscaling(spec, tc.replicasSet, field.NewPath("spec")) {
				got = append(got, err.Error())
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("validateAutoscaling (-want +got):\n%s", diff)
			}
		})
	}
}

func TestValidateAutoscalingOff(t *testing.T) {
	if errs := validateAutoscaling(nil, true, field.NewPath("spec")); len(errs) != 0 {
		t.Errorf("no autoscaling: %v, want no errors: replicas are the user's", errs)
	}
}

// The API's day names and the sizing package's must be the same list.
func TestValidateAutoscalingKnowsEveryWeekday(t *testing.T) {
	for _, d := range agentsv1alpha1.Weekdays {
		spec := &agentsv1alpha1.AutoscalingSpec{TargetWarmRatio: "0.9", MaxReplicas: 1, Schedules: []agentsv1alpha1.AutoscalingSchedule{{
			Name: "s", Days: []agentsv1alpha1.Weekday{d}, Start: "00:00", End: "00:00",
		}}}
		if errs := validateAutoscaling(spec, false, field.NewPath("spec")); len(errs) != 0 {
			t.Errorf("day %s: %v", d, errs)
		}
	}
}
