package controllers

import (
	"strings"
	"sync"
	"testing"
	"time"
	_ "time/tzdata" // the cases name zones; keep them independent of the host

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	agentsv1alpha1 "github.com/sandboxset/warmpool/api/v1alpha1"
	"github.com/sandboxset/warmpool/controllers/sizing"
)

var (
	demandKey = types.NamespacedName{Namespace: "team-a", Name: "python"}
	// A Wednesday, 12:00 UTC.
	demandT0 = time.Date(2025, time.March, 5, 12, 0, 0, 0, time.UTC)
)

func autoscaling(min, max int32) *agentsv1alpha1.AutoscalingSpec {
	return &agentsv1alpha1.AutoscalingSpec{
		TargetWarmRatio: "0.99", MinReplicas: min, MaxReplicas: max,
		ScaleDownDelay: &metav1.Duration{Duration: 5 * time.Minute},
	}
}

// claimEvery records n claims, step apart, the last at end; every coldEvery-th
// is cold (0: none).
func claimEvery(d *demandTracker, n int, step time.Duration, end time.Time, coldEvery int) {
	for i := range n {
		d.observeClaim(demandKey, end.Add(-time.Duration(n-1-i)*step), coldEvery == 0 || (i+1)%coldEvery != 0)
	}
}

func TestDemandSnapshot(t *testing.T) {
	for _, tc := range []struct {
		name    string
		record  func(d *demandTracker)
		spec    *agentsv1alpha1.AutoscalingSpec
		current int32
		want    agentsv1alpha1.AutoscalingStatus
	}{{
		name:    "a quiet pool sits at its minimum",
		spec:    autoscaling(2, 50),
		current: 2,
		want:    agentsv1alpha1.AutoscalingStatus{DesiredReplicas: 2, ArrivalRate: "0", RefillSeconds: "30", Reason: sizing.ReasonMin},
	}, {
		name: "2 claims a second, refilled in 10 s: 20 erlangs ask for 30 at 99%",
		record: func(d *demandTracker) {
			claimEvery(d, 240, 500*time.Millisecond, demandT0, 0)
			for range 5 {
				d.observeRefill(demandKey, demandT0.Add(-time.Minute), demandT0.Add(-50*time.Second))
			}
		},
		spec:    autoscaling(2, 50),
		current: 2,
		want: agentsv1alpha1.AutoscalingStatus{DesiredReplicas: 30, ArrivalRate: "2", RefillSeconds: "10",
			WarmHitRatio: "1", Reason: sizing.ReasonDemand},
	}, {
		name: "cold claims show in the warm-hit ratio",
		record: func(d *demandTracker) {
			claimEvery(d, 200, 500*time.Millisecond, demandT0, 40) // 5 of 200 cold
			d.observeRefill(demandKey, demandT0.Add(-time.Minute), demandT0.Add(-55*time.Second))
		},
		spec:    autoscaling(2, 50),
		current: 2,
		want: agentsv1alpha1.AutoscalingStatus{DesiredReplicas: 18, ArrivalRate: "2", RefillSeconds: "5",
			WarmHitRatio: "0.975", Reason: sizing.ReasonDemand},
	}, {
		name: "a batch a minute ago keeps the pool at its size, though the rate has fallen",
		record: func(d *demandTracker) {
			claimEvery(d, 100, time.Millisecond, demandT0.Add(-time.Minute), 0)
			d.observeRefill(demandKey, demandT0.Add(-2*time.Minute), demandT0.Add(-115*time.Second))
		},
		spec:    autoscaling(2, 200),
		current: 2,
		// 100 claims over 2 minutes: 0.83/s × 5 s asks for 10 at 99%.
		want: agentsv1alpha1.AutoscalingStatus{DesiredReplicas: 100, ArrivalRate: "0.833", RefillSeconds: "5",
			WarmHitRatio: "1", Reason: sizing.ReasonBurst},
	}, {
		name:    "the first snapshot keeps the current size for the delay",
		spec:    autoscaling(2, 50),
		current: 40,
		want:    agentsv1alpha1.AutoscalingStatus{DesiredReplicas: 40, ArrivalRate: "0", RefillSeconds: "30", Reason: sizing.ReasonScaleDownDelayed},
	}, {
		name: "without a delay it does not",
		spec: func() *agentsv1alpha1.AutoscalingSpec {
			s := autoscaling(2, 50)
			s.ScaleDownDelay = &metav1.Duration{}
			return s
		}(),
		current: 40,
		want:    agentsv1alpha1.AutoscalingStatus{DesiredReplicas: 2, ArrivalRate: "0", RefillSeconds: "30", Reason: sizing.ReasonMin},
	}, {
		name:   "demand beyond the maximum",
		record: func(d *demandTracker) { claimEvery(d, 500, 20*time.Millisecond, demandT0, 0) },
		spec:   autoscaling(2, 50),
		// 500 claims over the 9.98 s since they began, after a quiet spell.
		want: agentsv1alpha1.AutoscalingStatus{DesiredReplicas: 50, ArrivalRate: "50.1", RefillSeconds: "30",
			WarmHitRatio: "1", Reason: sizing.ReasonMax},
	}, {
		name: "an open schedule's floor, in its own time zone",
		spec: func() *agentsv1alpha1.AutoscalingSpec {
			s := autoscaling(2, 50)
			s.Schedules = []agentsv1alpha1.AutoscalingSchedule{{
				Name: "office", Days: []agentsv1alpha1.Weekday{agentsv1alpha1.Wednesday},
				// 07:00 to 08:00 in New York is 12:00 to 13:00 UTC in March.
				Start: "07:00", End: "08:00", TimeZone: "America/New_York", MinReplicas: 12,
			}}
			return s
		}(),
		want: agentsv1alpha1.AutoscalingStatus{DesiredReplicas: 12, ArrivalRate: "0", RefillSeconds: "30", Reason: "schedule office"},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			d := newDemandTracker()
			if tc.record != nil {
				tc.record(d)
			}
			snap, err := d.snapshot(demandKey, tc.spec, tc.current, demandT0)
			if err != nil {
				t.Fatalf("snapshot: %v", err)
			}
			if diff := cmp.Diff(tc.want, snap.status(nil)); diff != "" {
				t.Errorf("status (-want +got):\n%s", diff)
			}
		})
	}
}

// TestDemandScalesDownAfterTheDelay follows one pool: a burst, then quiet.
func TestDemandScalesDownAfterTheDelay(t *testing.T) {
	d := newDemandTracker()
	spec := autoscaling(1, 100)
	d.observeRefill(demandKey, demandT0.Add(-20*time.Second), demandT0.Add(-10*time.Second))
	claimEvery(d, 100, 100*time.Millisecond, demandT0, 0) // 10/s for 10 s
	steps := []struct {
		after time.Duration
		want  sizing.Recommendation
	}{
		{after: 0, want: sizing.Recommendation{Replicas: 100, Reason: sizing.ReasonMax}},
		{after: 3 * time.Minute, want: sizing.Recommendation{Replicas: 100, Reason: sizing.ReasonMax}},
		{after: 2*time.Minute + time.Second, want: sizing.Recommendation{Replicas: 1, Reason: sizing.ReasonMin}},
	}
	now := demandT0
	for i, s := range steps {
		now = now.Add(s.after)
		snap, err := d.snapshot(demandKey, spec, 1, now)
		if err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		if diff := cmp.Diff(s.want, snap.recommendation); diff != "" {
			t.Errorf("step %d, +%v: recommendation (-want +got):\n%s", i, s.after, diff)
		}
	}
}

func TestDemandSnapshotRefusesABadSpec(t *testing.T) {
	spec := autoscaling(1, 10)
	spec.Schedules = []agentsv1alpha1.AutoscalingSchedule{{Name: "x", Start: "08:00", End: "18:00", TimeZone: "Mars/Base"}}
	_, err := newDemandTracker().snapshot(demandKey, spec, 1, demandT0)
	if err == nil || !strings.Contains(err.Error(), `reading spec.autoscaling: schedules: schedule "x": loading time zone "Mars/Base"`) {
		t.Errorf("snapshot: %v, want the schedule's time zone named", err)
	}
	if _, err := newDemandTracker().snapshot(demandKey, nil, 1, demandT0); err == nil {
		t.Error("snapshot without autoscaling: no error")
	}
}

func TestDemandRefillMean(t *testing.T) {
	created := demandT0
	for _, tc := range []struct {
		name    string
		samples []time.Duration
		want    time.Duration
	}{
		{name: "none", want: 0},
		{name: "the first few are a plain mean", samples: []time.Duration{2 * time.Second, 4 * time.Second, 12 * time.Second}, want: 6 * time.Second},
		{name: "later ones move it by a tenth",
			samples: append(repeat(10*time.Second, 20), 20*time.Second), want: 11 * time.Second},
		{name: "a stuck Pod counts as ten minutes", samples: []time.Duration{2 * time.Hour}, want: maxRefillSample},
		{name: "a Pod ready before it was created is ignored", samples: []time.Duration{-time.Second, 3 * time.Second}, want: 3 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := newDemandTracker()
			for _, s := range tc.samples {
				d.observeRefill(demandKey, created, created.Add(s))
			}
			if got := d.pool(demandKey).refill; got != tc.want {
				t.Errorf("refill mean = %v, want %v", got, tc.want)
			}
		})
	}
}

func repeat(d time.Duration, n int) []time.Duration {
	out := make([]time.Duration, n)
	for i := range out {
		out[i] = d
	}
	return out
}

// TestDemandMemoryIsBounded claims at 50 a second for ten minutes, then
// floods: the history holds the long window and never more than the cap.
func TestDemandMemoryIsBounded(t *testing.T) {
	d := newDemandTracker()
	spec := autoscaling(1, 500)
	start := demandT0
	for i := range 600 * 50 {
		at := start.Add(time.Duration(i) * 20 * time.Millisecond)
		d.observeClaim(demandKey, at, i%10 != 0)
		if i%50 == 0 {
			if _, err := d.snapshot(demandKey, spec, 1, at); err != nil {
				t.Fatal(err)
			}
		}
	}
	p := d.pool(demandKey)
	if n := len(p.claims); n > int(sizing.LongWindow.Seconds())*50+1 {
		t.Errorf("at 50 claims/s the history holds %d claims, want at most the long window's %d", n, int(sizing.LongWindow.Seconds())*50+1)
	}
	if n := len(p.cold); n > int(sizing.LongWindow.Seconds())*5+1 {
		t.Errorf("the cold history holds %d, want at most %d", n, int(sizing.LongWindow.Seconds())*5+1)
	}
	flood := start.Add(time.Hour)
	for i := range 3 * maxTrackedClaims {
		d.observeClaim(demandKey, flood.Add(time.Duration(i)*time.Microsecond), true)
	}
	if n := len(p.claims); n > maxTrackedClaims {
		t.Errorf("after a flood the history holds %d claims, want at most %d", n, maxTrackedClaims)
	}
	if c := cap(p.claims); c > 3*maxTrackedClaims {
		t.Errorf("after a flood the history's array holds %d, want at most %d", c, 3*maxTrackedClaims)
	}
	d.forget(demandKey)
	if len(d.pools) != 0 {
		t.Errorf("forget left %d pools", len(d.pools))
	}
}

// TestDemandClaimsOutOfOrder: events need not arrive in claim order.
func TestDemandClaimsOutOfOrder(t *testing.T) {
	d := newDemandTracker()
	for _, offset := range []time.Duration{0, -3 * time.Second, -time.Second, -2 * time.Second} {
		d.observeClaim(demandKey, demandT0.Add(offset), true)
	}
	want := []time.Time{demandT0.Add(-3 * time.Second), demandT0.Add(-2 * time.Second), demandT0.Add(-time.Second), demandT0}
	if diff := cmp.Diff(want, d.pool(demandKey).claims); diff != "" {
		t.Errorf("claims (-want +got):\n%s", diff)
	}
}

// TestDemandConcurrentUse is for the race detector: the Pod watch records
// while reconciles take snapshots, across pools.
func TestDemandConcurrentUse(t *testing.T) {
	d := newDemandTracker()
	spec := autoscaling(1, 20)
	var wg sync.WaitGroup
	for w := range 4 {
		key := types.NamespacedName{Namespace: "ns", Name: string(rune('a' + w%2))}
		wg.Go(func() {
			for i := range 500 {
				at := demandT0.Add(time.Duration(i) * 10 * time.Millisecond)
				d.observeClaim(key, at, i%7 != 0)
				d.observeRefill(key, at.Add(-time.Second), at)
				if _, err := d.snapshot(key, spec, 1, at); err != nil {
					t.Error(err)
					return
				}
			}
			d.forget(key)
		})
	}
	wg.Wait()
}

func TestDecimal(t *testing.T) {
	for in, want := range map[float64]string{
		0: "0", 3.2: "3.2", 2: "2", 0.00833333: "0.00833", 1234.5: "1230", 9.996: "10", 0.5: "0.5", 42.37: "42.4",
	} {
		if got := decimal(in); got != want {
			t.Errorf("decimal(%v) = %q, want %q", in, got, want)
		}
	}
}

func TestRatioString(t *testing.T) {
	for _, tc := range []struct {
		warm, total int
		want        string
	}{{10, 10, "1"}, {199, 200, "0.995"}, {99999, 100000, "0.9999"}, {1, 3, "0.3333"}, {0, 4, "0"}} {
		if got := ratioString(tc.warm, tc.total); got != tc.want {
			t.Errorf("ratioString(%d, %d) = %q, want %q", tc.warm, tc.total, got, tc.want)
		}
	}
}

// The API's day names are the ones the sizing package reads.
func TestWeekdaysParse(t *testing.T) {
	if len(agentsv1alpha1.Weekdays) != len(sizing.WeekdayNames) {
		t.Fatalf("the API has %d day names, sizing %d", len(agentsv1alpha1.Weekdays), len(sizing.WeekdayNames))
	}
	for i, d := range agentsv1alpha1.Weekdays {
		if string(d) != sizing.WeekdayNames[i] {
			t.Errorf("day %d: the API says %q, sizing %q", i, d, sizing.WeekdayNames[i])
		}
	}
}
