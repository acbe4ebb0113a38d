package sizing

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestRecommend(t *testing.T) {
	weekdayFloor := Schedule{Name: "weekday", Days: []time.Weekday{time.Monday, time.Tuesday, time.Wednesday, time.Thursday, time.Friday},
		Start: 8 * 60, End: 18 * 60, Location: time.UTC, MinReplicas: 20}
	launch := Schedule{Name: "launch", Start: 11 * 60, End: 13 * 60, Location: time.UTC, MinReplicas: 30}
	wednesdayNoon := time.Date(2025, time.March, 5, 12, 0, 0, 0, time.UTC)
	wednesdayNight := time.Date(2025, time.March, 5, 22, 0, 0, 0, time.UTC)
	policy := Policy{Target: 0.99, Min: 2, Max: 50, Schedules: []Schedule{weekdayFloor}}
	for _, tc := range []struct {
		name   string
		policy Policy
		demand int32
		now    time.Time
		want   Recommendation
	}{
		{name: "demand within bounds", policy: policy, demand: 7, now: wednesdayNight, want: Recommendation{7, ReasonDemand}},
		{name: "no demand: the minimum", policy: policy, demand: 0, now: wednesdayNight, want: Recommendation{2, ReasonMin}},
		{name: "demand equal to the minimum is demand", policy: policy, demand: 2, now: wednesdayNight, want: Recommendation{2, ReasonDemand}},
		{name: "too much demand: the maximum", policy: policy, demand: 80, now: wednesdayNight, want: Recommendation{50, ReasonMax}},
		{name: "an open schedule raises the floor", policy: policy, demand: 7, now: wednesdayNoon, want: Recommendation{20, "schedule weekday"}},
		{name: "demand above an open schedule", policy: policy, demand: 25, now: wednesdayNoon, want: Recommendation{25, ReasonDemand}},
		{name: "the highest open floor wins",
			policy: Policy{Min: 2, Max: 50, Schedules: []Schedule{weekdayFloor, launch}}, demand: 0, now: wednesdayNoon,
			want: Recommendation{30, "schedule launch"}},
		{name: "a schedule no higher than the minimum leaves it to the minimum",
			policy: Policy{Min: 20, Max: 50, Schedules: []Schedule{weekdayFloor}}, demand: 0, now: wednesdayNoon,
			want: Recommendation{20, ReasonMin}},
		{name: "the maximum caps a floor too",
			policy: Policy{Min: 2, Max: 10, Schedules: []Schedule{weekdayFloor}}, demand: 0, now: wednesdayNoon,
			want: Recommendation{10, ReasonMax}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, Recommend(tc.policy, tc.demand, tc.now)); diff != "" {
				t.Errorf("Recommend (-want +got):\n%s", diff)
			}
		})
	}
}

// TestSize follows one pool through a burst and its end: up at once, down
// only after the delay, and saying why.
func TestSize(t *testing.T) {
	policy := Policy{Target: 0.99, Min: 1, Max: 100, ScaleDownDelay: 5 * time.Minute}
	refill := 10 * time.Second
	var held Stabilizer
	steps := []struct {
		after time.Duration
		rate  float64
		peak  int
		want  Recommendation
	}{
		{after: 0, rate: 0.1, want: Recommendation{5, ReasonDemand}},
		{after: time.Minute, rate: 2, want: Recommendation{30, ReasonDemand}},
		{after: time.Minute, rate: 0.1, want: Recommendation{30, ReasonScaleDownDelayed}},
		{after: 4 * time.Minute, rate: 0.1, want: Recommendation{30, ReasonScaleDownDelayed}},
		{after: time.Second, rate: 0.1, want: Recommendation{5, ReasonDemand}},
		{after: time.Minute, rate: 0, want: Recommendation{5, ReasonScaleDownDelayed}},
		{after: 6 * time.Minute, rate: 0, want: Recommendation{1, ReasonMin}},
		{after: time.Minute, rate: 20, want: Recommendation{100, ReasonMax}}, // 200 erlangs
		{after: time.Minute, rate: 0, want: Recommendation{100, ReasonMax}},  // held, and still capped
		{after: 6 * time.Minute, rate: 0.1, peak: 40, want: Recommendation{40, ReasonBurst}},
		{after: time.Minute, rate: 2, peak: 40, want: Recommendation{40, ReasonBurst}}, // 30 for the rate
		{after: time.Minute, rate: 2, peak: 10, want: Recommendation{40, ReasonScaleDownDelayed}},
		{after: 6 * time.Minute, rate: 2, peak: 10, want: Recommendation{30, ReasonDemand}},
		{after: time.Minute, rate: 0, peak: 500, want: Recommendation{100, ReasonMax}},
	}
	now := t0
	for i, s := range steps {
		now = now.Add(s.after)
		if diff := cmp.Diff(s.want, Size(policy, s.rate, s.peak, refill, now, &held)); diff != "" {
			t.Errorf("step %d, %v/s: Size (-want +got):\n%s", i, s.rate, diff)
		}
	}
}

// A delay that holds the pool no higher than its floor changes nothing, and
// the reason says so.
func TestSizeNamesTheFloorWhenTheDelayChangesNothing(t *testing.T) {
	policy := Policy{Target: 0.99, Min: 5, Max: 100, ScaleDownDelay: 5 * time.Minute}
	var held Stabilizer
	Size(policy, 0.1, 0, 10*time.Second, t0, &held) // demand 5
	got := Size(policy, 0, 0, 10*time.Second, t0.Add(time.Minute), &held)
	if want := (Recommendation{5, ReasonMin}); got != want {
		t.Errorf("Size = %+v, want %+v", got, want)
	}
}
