package main

import (
	"math"
	"slices"
	"testing"
	"time"
)

// countIn counts the arrivals in [from, to).
func countIn(arrivals []time.Duration, from, to time.Duration) int {
	n := 0
	for _, a := range arrivals {
		if a >= from && a < to {
			n++
		}
	}
	return n
}

func TestArrivalsAreSortedWithinTheTraceAndDeterministic(t *testing.T) {
	for _, quick := range []bool{false, true} {
		for _, tr := range traceCatalog(quick) {
			a := tr.arrivals(7)
			if len(a) == 0 {
				t.Errorf("%s (quick %t): no arrivals", tr.Name, quick)
				continue
			}
			if !slices.IsSorted(a) {
				t.Errorf("%s (quick %t): arrivals not sorted", tr.Name, quick)
			}
			if a[0] < 0 || a[len(a)-1] >= tr.Length {
				t.Errorf("%s (quick %t): arrivals span [%s, %s], want within [0, %s)", tr.Name, quick, a[0], a[len(a)-1], tr.Length)
			}
			if again := tr.arrivals(7); !slices.Equal(a, again) {
				t.Errorf("%s (quick %t): the same seed gave different arrivals", tr.Name, quick)
			}
			if other := tr.arrivals(8); slices.Equal(a, other) {
				t.Errorf("%s (quick %t): seeds 7 and 8 gave the same arrivals", tr.Name, quick)
			}
		}
	}
}

func TestTracesDrawFromTheirOwnStreams(t *testing.T) {
	// Two traces of equal shape but different names must not share times,
	// or adding a trace would shift the others' draws.
	a, b := steadyTrace(5, time.Minute), steadyTrace(5, time.Minute)
	b.Name = "other"
	if slices.Equal(a.arrivals(1), b.arrivals(1)) {
		t.Error("two traces named differently drew the same arrivals")
	}
}

func TestSteadyTraceIsPoissonAtItsRate(t *testing.T) {
	const rate = 4.0
	tr := steadyTrace(rate, 2*time.Hour)
	a := tr.arrivals(3)
	want := rate * tr.Length.Seconds() // 28,800; σ = √28,800 ≈ 170
	if got := float64(len(a)); math.Abs(got-want) > 4*math.Sqrt(want) {
		t.Errorf("%d arrivals, want %.0f ± %.0f", len(a), want, 4*math.Sqrt(want))
	}
	// Exponential gaps have a coefficient of variation of 1: evenly spaced
	// arrivals (0) or clumps (≫1) are not Poisson.
	var sum, sumSq float64
	for i := 1; i < len(a); i++ {
		g := (a[i] - a[i-1]).Seconds()
		sum, sumSq = sum+g, sumSq+g*g
	}
	n := float64(len(a) - 1)
	mean := sum / n
	cv := math.Sqrt(sumSq/n-mean*mean) / mean
	if cv < 0.95 || cv > 1.05 {
		t.Errorf("coefficient of variation of the gaps = %.3f, want about 1", cv)
	}
}

func TestMeanRateOverSeedsMatchesTheTrace(t *testing.T) {
	for _, tr := range traceCatalog(false) {
		const seeds = 40
		total := 0
		for seed := range uint64(seeds) {
			total += len(tr.arrivals(seed))
		}
		want := tr.expectedClaims() * seeds
		// Poisson: the variance equals the mean (bursts add none).
		if got := float64(total); math.Abs(got-want) > 4*math.Sqrt(want) {
			t.Errorf("%s: %d arrivals over %d seeds, want %.0f ± %.0f", tr.Name, total, seeds, want, 4*math.Sqrt(want))
		}
	}
}

func TestDiurnalTraceRisesToATenfoldPeakAndBack(t *testing.T) {
	tr := diurnalTrace(0.8, 8, 150*time.Second, 60)
	rates := make([]float64, len(tr.Segments))
	for i, s := range tr.Segments {
		rates[i] = s.Rate
	}
	if lo, hi := slices.Min(rates), slices.Max(rates); math.Abs(lo-0.8) > 1e-9 || math.Abs(hi-8) > 1e-9 {
		t.Errorf("rates span [%v, %v], want [0.8, 8]", lo, hi)
	}
	if peakAt := tr.Segments[slices.Index(rates, slices.Max(rates))].Start; peakAt != tr.Length/2 {
		t.Errorf("the peak segment starts at %s, want half the length, %s", peakAt, tr.Length/2)
	}
	for i := 1; i < len(rates)/2; i++ {
		if rates[i] <= rates[i-1] {
			t.Errorf("rate falls before the peak: segment %d %.3f after %.3f", i, rates[i], rates[i-1])
		}
		if math.Abs(rates[i]-rates[len(rates)-i]) > 1e-9 {
			t.Errorf("not symmetric: segment %d %.3f, segment %d %.3f", i, rates[i], len(rates)-i, rates[len(rates)-i])
		}
	}
	var covered time.Duration
	for i, s := range tr.Segments {
		if s.Start != covered {
			t.Fatalf("segment %d starts at %s, want %s: segments must be contiguous", i, s.Start, covered)
		}
		covered += s.Length
	}
	if covered != tr.Length {
		t.Errorf("segments cover %s, want %s", covered, tr.Length)
	}
	// Measured: around the peak the claims arrive about 10× as fast as
	// around the trough, over many seeds.
	var trough, peak int
	w := tr.Length / 20
	for seed := range uint64(100) {
		a := tr.arrivals(seed)
		trough += countIn(a, 0, w/2) + countIn(a, tr.Length-w/2, tr.Length)
		peak += countIn(a, tr.Length/2-w/2, tr.Length/2+w/2)
	}
	if ratio := float64(peak) / float64(trough); ratio < 8 || ratio > 11 {
		t.Errorf("measured peak ÷ trough = %.2f (%d ÷ %d), want about 10 (a little under, for the windows' width)", ratio, peak, trough)
	}
}

func TestBurstsArriveWhole(t *testing.T) {
	tr := burstsTrace(0, time.Minute, 200, time.Second, 10*time.Second, 40*time.Second)
	a := tr.arrivals(1)
	if len(a) != 400 {
		t.Fatalf("%d arrivals, want 400 (two bursts of 200, no background)", len(a))
	}
	for _, b := range tr.Bursts {
		if got := countIn(a, b.At, b.At+b.Width); got != 200 {
			t.Errorf("burst at %s: %d arrivals within %s, want 200", b.At, got, b.Width)
		}
	}
	withBackground := burstsTrace(1, 2*time.Minute, 200, time.Second, 30*time.Second, 80*time.Second)
	if got := withBackground.largestBurst(); got != 200 {
		t.Errorf("largestBurst = %d, want 200", got)
	}
	if got := mostWithin(withBackground.arrivals(1), time.Second); got < 200 || got > 210 {
		t.Errorf("most arrivals within 1 s = %d, want a burst of 200 plus a little background", got)
	}
}

func TestIdleNightIsNearlyIdle(t *testing.T) {
	tr := idleNightTrace(4, 40*time.Second, 0.05, 70*time.Second) // 160, 3.5, 160 claims
	if tr.Length != 150*time.Second {
		t.Fatalf("length %s, want 150s", tr.Length)
	}
	var busy1, night, busy2 int
	const seeds = 50
	for seed := range uint64(seeds) {
		a := tr.arrivals(seed)
		busy1 += countIn(a, 0, 40*time.Second)
		night += countIn(a, 40*time.Second, 110*time.Second)
		busy2 += countIn(a, 110*time.Second, 150*time.Second)
	}
	for _, c := range []struct {
		name      string
		got, want float64
	}{{"first busy stretch", float64(busy1), 160 * seeds}, {"night", float64(night), 3.5 * seeds}, {"second busy stretch", float64(busy2), 160 * seeds}} {
		if math.Abs(c.got-c.want) > 4*math.Sqrt(c.want) {
			t.Errorf("%s: %.0f arrivals over %d seeds, want %.0f ± %.0f", c.name, c.got, seeds, c.want, 4*math.Sqrt(c.want))
		}
	}
}

func TestCatalogFitsTheTimeBudget(t *testing.T) {
	for _, c := range []struct {
		quick bool
		most  time.Duration
	}{{false, 9 * time.Minute}, {true, 150 * time.Second}} {
		var total time.Duration
		names := []string{}
		for _, tr := range traceCatalog(c.quick) {
			total += tr.Length
			names = append(names, tr.Name)
		}
		if total > c.most {
			t.Errorf("quick %t: traces last %s, want at most %s", c.quick, total, c.most)
		}
		if !slices.Equal(names, traceNames) {
			t.Errorf("quick %t: traces %v, want %v", c.quick, names, traceNames)
		}
	}
	full := traceCatalog(false)
	if got := full[2].largestBurst(); got != 200 {
		t.Errorf("full bursts trace: largest burst %d, want 200 (the issue's)", got)
	}
	if d := full[1]; d.peakSegmentRate()/d.Segments[0].Rate != 10 {
		t.Errorf("full diurnal trace: peak %.2f ÷ trough %.2f, want 10", d.peakSegmentRate(), d.Segments[0].Rate)
	}
}

func TestDayLength(t *testing.T) {
	if got := dayLength(traceCatalog(false)); got != 150*time.Second {
		t.Errorf("dayLength(full) = %s, want the diurnal trace's 150s", got)
	}
	noDiurnal := []arrivalTrace{steadyTrace(1, time.Minute), idleNightTrace(1, time.Minute, 0, time.Minute)}
	if got := dayLength(noDiurnal); got != 3*time.Minute {
		t.Errorf("dayLength without a diurnal trace = %s, want the longest, 3m0s", got)
	}
}
