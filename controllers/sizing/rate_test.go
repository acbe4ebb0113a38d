package sizing

import (
	"math"
	"math/rand/v2"
	"testing"
	"time"
)

var t0 = time.Date(2025, time.March, 3, 12, 0, 0, 0, time.UTC)

// every returns n claims, step apart, the last at end.
func every(n int, step time.Duration, end time.Time) []time.Time {
	claims := make([]time.Time, n)
	for i := range claims {
		claims[i] = end.Add(-time.Duration(n-1-i) * step)
	}
	return claims
}

func TestRate(t *testing.T) {
	for _, tc := range []struct {
		name   string
		claims []time.Time
		want   float64
	}{
		{name: "no claims", want: 0},
		{name: "steady 1/s: both windows agree", claims: every(200, time.Second, t0), want: 1},
		{name: "a burst of 50 in 2 s after a quiet spell: read over the 2 s", claims: every(50, 40*time.Millisecond, t0), want: 25},
		{name: "a burst of 50 in 1 s: read over no less than 2 s", claims: every(50, 20*time.Millisecond, t0), want: 25},
		{name: "claims that began 4 s ago after a quiet spell: read over the 4 s",
			claims: append([]time.Time{t0.Add(-time.Minute)}, every(13, time.Second/3, t0)...), want: 13.0 / 4},
		{name: "the same claims in a stream: read over the whole window",
			claims: append(every(10, time.Second, t0.Add(-5*time.Second)), every(13, time.Second/3, t0)...), want: 1.8},
		{name: "two claims after a quiet spell are no onset", claims: every(2, time.Second, t0), want: 0.2},
		{name: "quiet for the last minute: the long window remembers",
			claims: every(60, time.Second, t0.Add(-60*time.Second)), want: 0.5},
		{name: "claims older than the long window are gone",
			claims: every(100, time.Second, t0.Add(-LongWindow)), want: 0},
		{name: "a claim exactly one short window ago is out of it",
			claims: []time.Time{t0.Add(-ShortWindow), t0}, want: 0.1},
		{name: "claims stamped after now count as now",
			claims: []time.Time{t0.Add(time.Second), t0.Add(2 * time.Second)}, want: 0.2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Rate(tc.claims, t0); math.Abs(got-tc.want) > 1e-6 {
				t.Errorf("Rate = %v, want %v", got, tc.want)
			}
		})
	}
}

// Taking the busier window reads a steady Poisson stream a little high:
// headroom, but it must not run away.
func TestRateOnPoissonArrivals(t *testing.T) {
	for _, rate := range []float64{0.2, 1, 10, 50} {
		rng := rand.New(rand.NewPCG(1, uint64(rate*1000)))
		var claims []time.Time
		at := t0
		end := t0.Add(time.Hour)
		for at.Before(end) {
			at = at.Add(time.Duration(rng.ExpFloat64() / rate * float64(time.Second)))
			claims = append(claims, at)
		}
		var sum float64
		samples, seen := 0, 0
		for now := t0.Add(LongWindow); now.Before(end); now = now.Add(time.Second) {
			for seen < len(claims) && !claims[seen].After(now) {
				seen++
			}
			sum += Rate(claims[:seen], now)
			samples++
		}
		if mean := sum / float64(samples); mean < 0.97*rate || mean > 1.5*rate {
			t.Errorf("rate %v: the estimate averages %.3f, want within [0.97, 1.5] times the rate", rate, mean)
		}
	}
}
