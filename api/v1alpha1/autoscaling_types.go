package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Weekday is a day of the week by its first three letters: Mon, Tue, Wed,
// Thu, Fri, Sat or Sun.
// +kubebuilder:validation:Enum=Mon;Tue;Wed;Thu;Fri;Sat;Sun
type Weekday string

const (
	Monday    Weekday = "Mon"
	Tuesday   Weekday = "Tue"
	Wednesday Weekday = "Wed"
	Thursday  Weekday = "Thu"
	Friday    Weekday = "Fri"
	Saturday  Weekday = "Sat"
	Sunday    Weekday = "Sun"
)

// Weekdays are the days a schedule may name, Monday first.
var Weekdays = []Weekday{Monday, Tuesday, Wednesday, Thursday, Friday, Saturday, Sunday}

// AutoscalingSpec sizes the warm pool from demand. The operator measures
// how fast sandboxes are claimed and how long a new one takes to become
// ready, and keeps the smallest pool that serves targetWarmRatio of claims
// warm, between minReplicas and maxReplicas and at least the floor of any
// open schedule. It grows the pool at once and shrinks it only after
// demand has stayed lower for scaleDownDelay, deleting warm sandboxes
// only. While this is set the operator owns spec.replicas: changing it, or
// kubectl scale, is refused.
type AutoscalingSpec struct {
	// TargetWarmRatio is the fraction of claims that should find a warm
	// sandbox, written as a decimal greater than 0 and at most 1: "0.99"
	// asks for 99 claims in 100 served warm. A higher target needs a
	// larger pool, steeply so near 1; "1" is taken as one cold claim in a
	// billion. Defaults to "0.99".
	// The webhook checks it (sizing.ParseRatio), as it does the times
	// below: a schema rule would add "some validation rules were not
	// checked" to every schema error of the whole object.
	// +kubebuilder:validation:MaxLength=12
	// +kubebuilder:default="0.99"
	// +optional
	TargetWarmRatio string `json:"targetWarmRatio,omitempty"`

	// MinReplicas is the smallest the pool gets, however quiet. With 0 the
	// first claim after a quiet spell is served cold. Defaults to 0.
	// +kubebuilder:validation:Minimum=0
	// +optional
	MinReplicas int32 `json:"minReplicas,omitempty"`

	// MaxReplicas is the largest the pool gets, however busy, and at most
	// the operator's ceiling (manager flag --max-replicas).
	// +kubebuilder:validation:Minimum=1
	// +required
	MaxReplicas int32 `json:"maxReplicas"`

	// ScaleDownDelay is how long demand must stay lower before the pool
	// shrinks to match it, e.g. 5m or 1h: the pool keeps the largest size
	// demand asked for in that time. 0 shrinks at once. Growing is never
	// delayed. Defaults to 5m.
	// +kubebuilder:default="5m"
	// +optional
	ScaleDownDelay *metav1.Duration `json:"scaleDownDelay,omitempty"`

	// Schedules raise the pool's floor at set times of the week, e.g. at
	// least 20 sandboxes on weekdays from 08:00 to 18:00 Berlin time,
	// ahead of demand the operator has not seen yet. Where several are
	// open the highest floor applies; maxReplicas still caps it.
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=16
	// +optional
	Schedules []AutoscalingSchedule `json:"schedules,omitempty"`
}

// AutoscalingSchedule is a floor on the pool's size during a daily window
// of wall-clock time.
type AutoscalingSchedule struct {
	// Name identifies the schedule; status.autoscaling.reason names it
	// ("schedule <name>") while its floor sets the pool's size. Lower-case
	// letters, digits and '-'.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	// +required
	Name string `json:"name"`

	// Days are the days the window opens on, e.g. [Mon, Tue, Wed, Thu,
	// Fri]; empty means every day. A window that crosses midnight belongs
	// to the day it opens on: Fri from 22:00 to 06:00 covers early
	// Saturday, not early Friday.
	// +listType=set
	// +kubebuilder:validation:MaxItems=7
	// +optional
	Days []Weekday `json:"days,omitempty"`

	// Start is when the window opens, as HH:MM on a 24-hour clock in
	// timeZone, e.g. "08:00".
	// +kubebuilder:validation:MaxLength=5
	// +required
	Start string `json:"start"`

	// End is when the window closes, as HH:MM, e.g. "18:00". An end
	// before start closes the window the next day ("22:00" to "06:00");
	// an end equal to start keeps it open 24 hours ("00:00" to "00:00"
	// for whole days).
	// +kubebuilder:validation:MaxLength=5
	// +required
	End string `json:"end"`

	// TimeZone is the IANA time zone start and end are read in, e.g.
	// "Europe/Berlin" or "America/New_York", following its daylight saving
	// time. Defaults to UTC.
	// +kubebuilder:validation:MaxLength=64
	// +optional
	TimeZone string `json:"timeZone,omitempty"`

	// MinReplicas is the pool's floor while the window is open, at most
	// maxReplicas.
	// +kubebuilder:validation:Minimum=0
	// +required
	MinReplicas int32 `json:"minReplicas"`
}

// AutoscalingStatus is what the autoscaler last decided and the demand it
// saw. Rates and times are decimals in strings, as CRDs avoid floats.
type AutoscalingStatus struct {
	// DesiredReplicas is the size the autoscaler last chose, which it
	// writes to spec.replicas.
	// +optional
	DesiredReplicas int32 `json:"desiredReplicas"`

	// ArrivalRate is the claim rate it sized for, in claims per second: the
	// busier of the last 10 seconds (or, for claims that began after a
	// quiet spell, the time since they began) and the last 2 minutes,
	// e.g. "3.2".
	// +optional
	ArrivalRate string `json:"arrivalRate,omitempty"`

	// RefillSeconds is the time a new sandbox takes from creation to
	// ready, in seconds, e.g. "4.5": a moving mean over recent ones, or 30
	// until the operator has seen one become ready.
	// +optional
	RefillSeconds string `json:"refillSeconds,omitempty"`

	// WarmHitRatio is the fraction of the last 2 minutes' claims that found
	// a warm sandbox, e.g. "0.995"; empty when there was no claim.
	// +optional
	WarmHitRatio string `json:"warmHitRatio,omitempty"`

	// Reason says what set DesiredReplicas: "demand" (the size that serves
	// the target at the observed rate and refill time), "burst" (the most
	// claims that recently arrived within one refill time, which is more),
	// "scale-down delayed" (demand fell less than scaleDownDelay ago),
	// "min", "max", or "schedule <name>" (an open schedule's floor).
	// +optional
	Reason string `json:"reason,omitempty"`

	// LastScaleTime is when the autoscaler last changed spec.replicas.
	// +optional
	LastScaleTime *metav1.Time `json:"lastScaleTime,omitempty"`
}
