package sizing

import (
	"math"
	"testing"
	"time"
)

func TestWarmSize(t *testing.T) {
	for _, tc := range []struct {
		name   string
		rate   float64
		refill time.Duration
		target float64
		limit  int32
		want   int32
	}{
		{name: "no claims, no pool", rate: 0, refill: 10 * time.Second, target: 0.99, limit: 100, want: 0},
		{name: "no refill time, no pool", rate: 5, refill: 0, target: 0.99, limit: 100, want: 0},
		{name: "an unreadable rate asks for nothing", rate: math.NaN(), refill: time.Second, target: 0.99, limit: 100, want: 0},
		{name: "a trickle needs one", rate: 0.001, refill: time.Second, target: 0.99, limit: 100, want: 1},
		// B(S, 1) = 1/2, 1/5, 1/16, 1/65, 1/326 for S = 1..5.
		{name: "load 1 at 90%", rate: 1, refill: time.Second, target: 0.9, limit: 100, want: 3},
		{name: "load 1 at 98%", rate: 1, refill: time.Second, target: 0.98, limit: 100, want: 4},
		{name: "load 1 at 99%", rate: 1, refill: time.Second, target: 0.99, limit: 100, want: 5},
		{name: "load 1 at 99.69%", rate: 1, refill: time.Second, target: 0.9969, limit: 100, want: 5},
		{name: "load 1 at 99.7%", rate: 1, refill: time.Second, target: 0.997, limit: 100, want: 6},
		// Published Erlang B tables at 1% loss: 10 slots carry 4.461
		// erlangs, 20 carry 12.031, 100 carry 84.064.
		{name: "table: 4.45 erlangs at 99%", rate: 0.445, refill: 10 * time.Second, target: 0.99, limit: 1000, want: 10},
		{name: "table: 4.47 erlangs at 99%", rate: 0.447, refill: 10 * time.Second, target: 0.99, limit: 1000, want: 11},
		{name: "table: 12.02 erlangs at 99%", rate: 6.01, refill: 2 * time.Second, target: 0.99, limit: 1000, want: 20},
		{name: "table: 12.04 erlangs at 99%", rate: 6.02, refill: 2 * time.Second, target: 0.99, limit: 1000, want: 21},
		{name: "table: 84.0 erlangs at 99%", rate: 2.8, refill: 30 * time.Second, target: 0.99, limit: 1000, want: 100},
		{name: "table: 84.1 erlangs at 99%", rate: 4.205, refill: 20 * time.Second, target: 0.99, limit: 1000, want: 101},
		{name: "the limit caps it", rate: 50, refill: 30 * time.Second, target: 0.99, limit: 100, want: 100},
		// B(4, 0.01) ≈ 4.2e-10, B(3, 0.01) ≈ 1.7e-7.
		{name: "a target of 1 is one cold claim in a billion", rate: 0.01, refill: time.Second, target: 1, limit: 40, want: 4},
		{name: "a target of 1 under load asks for the limit", rate: 50, refill: 10 * time.Second, target: 1, limit: 600, want: 600},
		{name: "no room, no pool", rate: 1, refill: time.Second, target: 0.99, limit: 0, want: 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := WarmSize(tc.rate, tc.refill, tc.target, tc.limit); got != tc.want {
				t.Errorf("WarmSize(%v/s, %v, %v, %d) = %d, want %d", tc.rate, tc.refill, tc.target, tc.limit, got, tc.want)
			}
		})
	}
}

// poissonTail is the smallest S with P(N ≤ S−1) ≥ target for N Poisson
// with mean load: the claims of one refill time, had none of them been
// served cold. It ignores that a cold claim takes no slot, so it is an
// upper bound on WarmSize that grows apart from it as the load grows.
func poissonTail(load, target float64) int32 {
	p := math.Exp(-load)
	cdf := p
	for s := int32(1); ; s++ {
		if cdf >= target {
			return s
		}
		p *= load / float64(s)
		cdf += p
	}
}

func TestWarmSizeIsAtMostThePoissonTail(t *testing.T) {
	for _, target := range []float64{0.9, 0.99, 0.999} {
		for _, load := range []float64{0.1, 0.5, 1, 2, 5, 10, 50, 200} {
			got, bound := WarmSize(load, time.Second, target, 10000), poissonTail(load, target)
			if got > bound {
				t.Errorf("load %v, target %v: WarmSize %d is above the Poisson tail %d", load, target, got, bound)
			}
			if load <= 1 && got != bound {
				t.Errorf("load %v, target %v: WarmSize %d, want the Poisson tail %d: at light load the two agree", load, target, got, bound)
			}
		}
	}
}
