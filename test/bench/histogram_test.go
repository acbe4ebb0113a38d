package main

import (
	"math"
	"testing"
)

func TestHistogramQuantile(t *testing.T) {
	bs := []bucket{{0.5, 10}, {1, 90}, {2, 100}, {math.Inf(1), 100}}
	for _, tc := range []struct {
		q, want float64
	}{
		{0.05, 0.25}, // half-way into the first bucket, from 0
		{0.5, 0.75},  // rank 50: 40 of the 80 in (0.5, 1]
		{0.99, 1.9},  // rank 99: 9 of the 10 in (1, 2]
		{1, 2},
	} {
		if got, ok := histogramQuantile(tc.q, bs); !ok || math.Abs(got-tc.want) > 1e-9 {
			t.Errorf("q=%v: got %v, %v; want %v", tc.q, got, ok, tc.want)
		}
	}
	if got, ok := histogramQuantile(0.99, []bucket{{1, 1}, {math.Inf(1), 100}}); !ok || got != 1 {
		t.Errorf("a quantile past every finite bound reads as the largest: got %v, %v", got, ok)
	}
	if _, ok := histogramQuantile(0.99, []bucket{{1, 0}, {math.Inf(1), 0}}); ok {
		t.Error("no observations, no quantile")
	}
	c := counters{replacementBucket + "0.5": 10, replacementBucket + "+Inf": 100, replacementBucket + "1": 90, "other": 3}
	if got := buckets(c, replacementBucket); len(got) != 3 || got[0].le != 0.5 || !math.IsInf(got[2].le, 1) {
		t.Errorf("buckets = %v, want three sorted by bound", got)
	}
}
