package main

import (
	"math"
	"testing"
)

func TestPercentile(t *testing.T) {
	xs := make([]float64, 100)
	for i := range xs {
		xs[i] = float64(100 - i) // 100..1, unsorted on purpose
	}
	for _, tc := range []struct{ p, want float64 }{{50, 50}, {90, 90}, {99, 99}, {100, 100}, {0, 1}} {
		if got := percentile(xs, tc.p); got != tc.want {
			t.Errorf("percentile(1..100, %v) = %v, want %v", tc.p, got, tc.want)
		}
	}
	if got := percentile([]float64{7}, 99); got != 7 {
		t.Errorf("percentile of one sample = %v, want 7", got)
	}
	if got := percentile(nil, 50); !math.IsNaN(got) {
		t.Errorf("percentile of none = %v, want NaN", got)
	}
	if xs[0] != 100 {
		t.Error("percentile sorted its input in place")
	}
}

func TestSummarize(t *testing.T) {
	for _, tc := range []struct {
		xs               []float64
		median, min, max float64
		n                int
	}{
		{[]float64{3, 1, 2}, 2, 1, 3, 3},
		{[]float64{4, 1, 3, 2}, 2.5, 1, 4, 4},
		{[]float64{5, math.NaN(), 1}, 3, 1, 5, 2},
	} {
		got := summarize(tc.xs)
		if got.Median != tc.median || got.Min != tc.min || got.Max != tc.max || got.N != tc.n {
			t.Errorf("summarize(%v) = %+v, want median %v range %v–%v n %d", tc.xs, got, tc.median, tc.min, tc.max, tc.n)
		}
	}
	if got := summarize([]float64{math.NaN()}); !math.IsNaN(got.Median) || got.N != 0 {
		t.Errorf("summarize(NaN) = %+v, want NaN median and n 0", got)
	}
}
