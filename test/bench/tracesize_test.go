package main

import (
	"math"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func secs(xs ...float64) []time.Duration {
	out := make([]time.Duration, len(xs))
	for i, x := range xs {
		out[i] = time.Duration(x * float64(time.Second))
	}
	return out
}

func TestLittleSize(t *testing.T) {
	for _, tc := range []struct {
		rate   float64
		refill time.Duration
		want   int
	}{
		{4, 2100 * time.Millisecond, 9}, // 8.4 → 9
		{2, 2 * time.Second, 4},         // exactly 4, not 5
		{0.01, time.Second, 1},          // never below 1
		{0, time.Second, 1},
		{10, 2500 * time.Millisecond, 25},
	} {
		if got := littleSize(tc.rate, tc.refill); got != tc.want {
			t.Errorf("littleSize(%v/s, %s) = %d, want %d", tc.rate, tc.refill, got, tc.want)
		}
	}
}

func TestMostWithin(t *testing.T) {
	for _, tc := range []struct {
		name     string
		arrivals []time.Duration
		w        time.Duration
		want     int
	}{
		{"none", nil, time.Second, 0},
		{"one", secs(3), time.Second, 1},
		{"the window is half open", secs(0, 1, 2), time.Second, 1},
		{"just inside", secs(0, 0.999, 2), time.Second, 2},
		{"a burst in the middle", secs(0, 5, 5.1, 5.2, 5.3, 9), time.Second, 4},
		{"a wide window takes all", secs(0, 5, 5.1, 5.2, 5.3, 9), 10 * time.Second, 6},
		{"equal times", secs(1, 1, 1, 4), time.Second, 3},
	} {
		if got := mostWithin(tc.arrivals, tc.w); got != tc.want {
			t.Errorf("%s: mostWithin(%v, %s) = %d, want %d", tc.name, tc.arrivals, tc.w, got, tc.want)
		}
	}
}

func TestSizePools(t *testing.T) {
	refill := refillEstimate{Mean: 2 * time.Second, P90: 3 * time.Second}
	// 20 claims over 10 s (2/s), of which 8 within 0.5 s at 5 s.
	arrivals := secs(0, 0.5, 1, 1.5, 2, 2.5, 3, 3.5, 5, 5.05, 5.1, 5.15, 5.2, 5.25, 5.3, 5.35, 7, 8, 9, 9.5)
	s := sizePools(arrivals, 10*time.Second, refill)
	if s.Mean != 4 {
		t.Errorf("mean size %d, want ⌈2/s × 2 s⌉ = 4", s.Mean)
	}
	// Within [2.5, 5.5): 2.5, 3, 3.5 and the eight around 5 s.
	if s.Peak != 11 {
		t.Errorf("peak size %d, want 11 (the most within any 3 s)", s.Peak)
	}
	if s.AutoInitial != s.Mean || s.AutoMin != 1 || s.AutoMax != 2*s.Peak {
		t.Errorf("autoscaled initial %d, min %d, max %d; want %d, 1, %d", s.AutoInitial, s.AutoMin, s.AutoMax, s.Mean, 2*s.Peak)
	}
	// The peak pool is never smaller than the mean one.
	sparse := sizePools(secs(0, 100), 10*time.Second, refillEstimate{Mean: 10 * time.Second, P90: time.Millisecond})
	if sparse.Peak < sparse.Mean {
		t.Errorf("peak %d < mean %d", sparse.Peak, sparse.Mean)
	}
}

func TestNewRefillEstimate(t *testing.T) {
	got, err := newRefillEstimate(secs(1, 2, 3, 4, 5, 6, 7, 8, 9, 10))
	if err != nil {
		t.Fatal(err)
	}
	want := refillEstimate{Mean: 5500 * time.Millisecond, P90: 9 * time.Second, Max: 10 * time.Second, Samples: 10}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("newRefillEstimate (-want +got):\n%s", diff)
	}
	if _, err := newRefillEstimate(nil); err == nil {
		t.Error("newRefillEstimate(nil) succeeded, want an error")
	}
}

func TestDemandSeries(t *testing.T) {
	got := demandSeries(secs(0.5, 1, 1.2, 3), time.Second, time.Second, 4*time.Second)
	want := &availableSeries{
		Seconds: []float64{0, 1, 2, 3, 4},
		// At t, the claims in (t−1 s, t].
		Pods: []int{0, 2, 1, 1, 0},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("demandSeries (-want +got):\n%s", diff)
	}
}

func TestStepsBetweenAndIntegrate(t *testing.T) {
	t0 := time.Date(2026, 12, 7, 3, 0, 0, 0, time.UTC)
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	history := []availPoint{{at(0), 5}, {at(2), 3}, {at(4), 6}, {at(10), 2}}
	for _, tc := range []struct {
		name     string
		from, to float64
		want     []availPoint
		area     float64
		lo, hi   int
	}{
		{"the whole", 0, 10, []availPoint{{at(0), 5}, {at(2), 3}, {at(4), 6}, {at(10), 2}, {at(10), 2}}, 5*2 + 3*2 + 6*6, 2, 6},
		{"starting on a change", 2, 3, []availPoint{{at(2), 3}, {at(3), 3}}, 3, 3, 3},
		{"mid-step start", 1, 5, []availPoint{{at(1), 5}, {at(2), 3}, {at(4), 6}, {at(5), 6}}, 5*1 + 3*2 + 6*1, 3, 6},
		{"before any point: 0", -2, 1, []availPoint{{at(-2), 0}, {at(0), 5}, {at(1), 5}}, 0*2 + 5*1, 0, 5},
		{"after the last", 11, 13, []availPoint{{at(11), 2}, {at(13), 2}}, 2 * 2, 2, 2},
	} {
		got := stepsBetween(history, at(tc.from), at(tc.to))
		if diff := cmp.Diff(tc.want, got, cmp.AllowUnexported(availPoint{})); diff != "" {
			t.Errorf("%s: stepsBetween (-want +got):\n%s", tc.name, diff)
		}
		if area := integrate(got); math.Abs(area-tc.area) > 1e-9 {
			t.Errorf("%s: integrate = %v, want %v", tc.name, area, tc.area)
		}
		if lo, hi := stepRange(got); lo != tc.lo || hi != tc.hi {
			t.Errorf("%s: stepRange = %d–%d, want %d–%d", tc.name, lo, hi, tc.lo, tc.hi)
		}
	}
}

func TestCheckGoals(t *testing.T) {
	nan := math.NaN()
	for _, tc := range []struct {
		name            string
		mean, peak, aut variantFigures
		supported       bool
		want            goalChecks
	}{
		{
			name: "autoscaled meets the target cheaper than the peak pool",
			mean: variantFigures{0.90, 500}, peak: variantFigures{1, 2000}, aut: variantFigures{0.995, 1000}, supported: true,
			want: goalChecks{MeetsTarget: verdictYes, BestFixed: variantPeak, PodSecondsRatio: 0.5, WithinBudget: verdictYes, BeatsMean: verdictYes},
		},
		{
			name: "the cheapest fixed pool meeting the target is the bar",
			mean: variantFigures{0.995, 500}, peak: variantFigures{1, 2000}, aut: variantFigures{0.999, 700}, supported: true,
			want: goalChecks{MeetsTarget: verdictYes, BestFixed: variantMean, PodSecondsRatio: 1.4, WithinBudget: verdictNo, BeatsMean: verdictYes},
		},
		{
			name: "exactly 1.2× is within",
			mean: variantFigures{0.5, 100}, peak: variantFigures{0.99, 1000}, aut: variantFigures{0.99, 1200}, supported: true,
			want: goalChecks{MeetsTarget: verdictYes, BestFixed: variantPeak, PodSecondsRatio: 1.2, WithinBudget: verdictYes, BeatsMean: verdictYes},
		},
		{
			name: "missing the target fails the budget too",
			mean: variantFigures{0.8, 100}, peak: variantFigures{1, 1000}, aut: variantFigures{0.95, 300}, supported: true,
			want: goalChecks{MeetsTarget: verdictNo, BestFixed: variantPeak, PodSecondsRatio: 0.3, WithinBudget: verdictNo, BeatsMean: verdictYes,
				WithinNote: "the autoscaled pool missed the target, so its Pod-seconds buy nothing"},
		},
		{
			name: "no fixed pool meets the target",
			mean: variantFigures{0.5, 100}, peak: variantFigures{0.9, 1000}, aut: variantFigures{0.99, 300}, supported: true,
			want: goalChecks{MeetsTarget: verdictYes, WithinBudget: verdictNA, BeatsMean: verdictYes, WithinNote: "no fixed pool met the target"},
		},
		{
			name: "equal warm hits tie",
			mean: variantFigures{1, 100}, peak: variantFigures{1, 1000}, aut: variantFigures{1, 110}, supported: true,
			want: goalChecks{MeetsTarget: verdictYes, BestFixed: variantMean, PodSecondsRatio: 1.1, WithinBudget: verdictYes, BeatsMean: verdictTie},
		},
		{
			name: "fewer warm hits than the mean pool",
			mean: variantFigures{0.9, 100}, peak: variantFigures{1, 1000}, aut: variantFigures{0.8, 50}, supported: true,
			want: goalChecks{MeetsTarget: verdictNo, BestFixed: variantPeak, PodSecondsRatio: 0.05, WithinBudget: verdictNo, BeatsMean: verdictNo,
				WithinNote: "the autoscaled pool missed the target, so its Pod-seconds buy nothing"},
		},
		{
			name: "not supported: nothing applies",
			mean: variantFigures{0.9, 100}, peak: variantFigures{1, 1000}, aut: variantFigures{0.9, 100}, supported: false,
			want: goalChecks{MeetsTarget: verdictNA, WithinBudget: verdictNA, BeatsMean: verdictNA,
				WithinNote: "autoscaling is not supported by this build: the autoscaled pool stayed at its initial size"},
		},
		{
			name: "no claim served",
			mean: variantFigures{0.9, 100}, peak: variantFigures{1, 1000}, aut: variantFigures{nan, 100}, supported: true,
			want: goalChecks{MeetsTarget: verdictNA, WithinBudget: verdictNA, BeatsMean: verdictNA, WithinNote: "the autoscaled pool served no claim"},
		},
	} {
		tc.want.Target, tc.want.Supported = 0.99, tc.supported
		got := checkGoals(0.99, tc.mean, tc.peak, tc.aut, tc.supported)
		if diff := cmp.Diff(tc.want, got, cmp.Comparer(func(a, b float64) bool { return math.Abs(a-b) < 1e-9 })); diff != "" {
			t.Errorf("%s: checkGoals (-want +got):\n%s", tc.name, diff)
		}
	}
}
