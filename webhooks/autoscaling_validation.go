package webhooks

import (
	"fmt"

	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"

	agentsv1alpha1 "github.com/sandboxset/warmpool/api/v1alpha1"
	"github.com/sandboxset/warmpool/controllers/sizing"
)

// validateAutoscaling returns every problem with a pool's autoscaling
// settings; nil settings have none. fldPath is the SandboxSet's spec, as
// the errors fall on two of its fields: autoscaling, and replicas when
// replicasSet says the request changes spec.replicas, which the autoscaler
// owns while it is on. The schema checks most fields on its own; this
// repeats what it can, for objects built in Go and for a clear message, and
// adds what it cannot: time zones, and schedules against maxReplicas.
func validateAutoscaling(spec *agentsv1alpha1.AutoscalingSpec, replicasSet bool, fldPath *field.Path) field.ErrorList {
	if spec == nil {
		return nil
	}
	path := fldPath.Child("autoscaling")
	var errs field.ErrorList
	if replicasSet {
		errs = append(errs, field.Forbidden(fldPath.Child("replicas"), fmt.Sprintf(
			"is set by the autoscaler while %s is present; change %s (%d) or %s (%d) instead, or remove %s to size the pool by hand",
			path, path.Child("minReplicas"), spec.MinReplicas, path.Child("maxReplicas"), spec.MaxReplicas, path)))
	}
	errs = append(errs, validateTargetWarmRatio(spec.TargetWarmRatio, path.Child("targetWarmRatio"))...)
	errs = append(errs, validateReplicaBounds(spec, path)...)
	if d := spec.ScaleDownDelay; d != nil && d.Duration < 0 {
		errs = append(errs, field.Invalid(path.Child("scaleDownDelay"), d.Duration.String(),
			"must be 0 or more, e.g. 5m; 0 shrinks the pool as soon as demand falls"))
	}
	errs = append(errs, validateSchedules(spec.Schedules, spec.MaxReplicas, path.Child("schedules"))...)
	return errs
}

func validateTargetWarmRatio(ratio string, path *field.Path) field.ErrorList {
	if ratio == "" {
		return field.ErrorList{field.Required(path, `the fraction of claims to serve warm, e.g. "0.99"`)}
	}
	if _, err := sizing.ParseRatio(ratio); err != nil {
		return field.ErrorList{field.Invalid(path, ratio,
			`must be a decimal greater than 0 and at most 1, e.g. "0.99" to serve 99 claims in 100 warm`)}
	}
	return nil
}

// validateReplicaBounds checks minReplicas and maxReplicas, each alone and
// then against each other; path is spec.autoscaling.
func validateReplicaBounds(spec *agentsv1alpha1.AutoscalingSpec, path *field.Path) field.ErrorList {
	var errs field.ErrorList
	if spec.MinReplicas < 0 {
		errs = append(errs, field.Invalid(path.Child("minReplicas"), spec.MinReplicas, "must be 0 or more"))
	}
	if spec.MaxReplicas < 1 {
		errs = append(errs, field.Invalid(path.Child("maxReplicas"), spec.MaxReplicas, "must be 1 or more"))
	}
	if len(errs) == 0 && spec.MinReplicas > spec.MaxReplicas {
		errs = append(errs, field.Invalid(path.Child("minReplicas"), spec.MinReplicas,
			fmt.Sprintf("must not be more than maxReplicas (%d)", spec.MaxReplicas)))
	}
	return errs
}

func validateSchedules(schedules []agentsv1alpha1.AutoscalingSchedule, maxReplicas int32, path *field.Path) field.ErrorList {
	var errs field.ErrorList
	names := sets.New[string]()
	for i := range schedules {
		s := &schedules[i]
		p := path.Index(i)
		switch {
		case s.Name == "":
			errs = append(errs, field.Required(p.Child("name"), "every schedule needs a name, e.g. weekdays"))
		case names.Has(s.Name):
			errs = append(errs, field.Duplicate(p.Child("name"), s.Name))
		default:
			for _, msg := range validation.IsDNS1123Label(s.Name) {
				errs = append(errs, field.Invalid(p.Child("name"), s.Name, msg))
			}
		}
		names.Insert(s.Name)
		errs = append(errs, validateScheduleWindow(s, p)...)
		switch {
		case s.MinReplicas < 0:
			errs = append(errs, field.Invalid(p.Child("minReplicas"), s.MinReplicas, "must be 0 or more"))
		case maxReplicas >= 1 && s.MinReplicas > maxReplicas:
			errs = append(errs, field.Invalid(p.Child("minReplicas"), s.MinReplicas, fmt.Sprintf(
				"must not be more than maxReplicas (%d), which caps every schedule; raise maxReplicas or lower this floor", maxReplicas)))
		}
	}
	return errs
}

// validateScheduleWindow checks a schedule's days, times and time zone.
func validateScheduleWindow(s *agentsv1alpha1.AutoscalingSchedule, path *field.Path) field.ErrorList {
	var errs field.ErrorList
	days := sets.New[agentsv1alpha1.Weekday]()
	for j, d := range s.Days {
		switch _, err := sizing.ParseWeekday(string(d)); {
		case err != nil:
			errs = append(errs, field.NotSupported(path.Child("days").Index(j), d, agentsv1alpha1.Weekdays))
		case days.Has(d):
			errs = append(errs, field.Duplicate(path.Child("days").Index(j), d))
		}
		days.Insert(d)
	}
	for _, c := range []struct{ name, value string }{{"start", s.Start}, {"end", s.End}} {
		if _, err := sizing.ParseClock(c.value); err != nil {
			errs = append(errs, field.Invalid(path.Child(c.name), c.value,
				"must be a time of day as HH:MM on a 24-hour clock, e.g. 08:00 or 18:30"))
		}
	}
	if _, err := sizing.LoadTimeZone(s.TimeZone); err != nil {
		errs = append(errs, field.Invalid(path.Child("timeZone"), s.TimeZone,
			"must be an IANA time zone name, e.g. Europe/Berlin, America/New_York or UTC (see the tz database's list)"))
	}
	return errs
}
