package main

import (
	"math"
	"slices"
	"time"
)

// percentile returns the nearest-rank percentile p (0–100) of xs, or NaN for
// none. Nearest rank never invents a value between two samples, so a p99 of
// 100 samples is the 99th slowest, not an interpolation.
func percentile(xs []float64, p float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	rank := int(math.Ceil(p / 100 * float64(len(s))))
	return s[min(max(rank, 1), len(s))-1]
}

// spread is the median and range of one metric over the repetitions.
type spread struct {
	Median float64 `json:"median"`
	Min    float64 `json:"min"`
	Max    float64 `json:"max"`
	N      int     `json:"n"`
}

// summarize takes the median (the mean of the middle two for an even count)
// and range of xs, skipping NaNs, which stand for "not measured".
func summarize(xs []float64) spread {
	var s []float64
	for _, x := range xs {
		if !math.IsNaN(x) {
			s = append(s, x)
		}
	}
	if len(s) == 0 {
		return spread{Median: math.NaN(), Min: math.NaN(), Max: math.NaN()}
	}
	slices.Sort(s)
	mid := len(s) / 2
	median := s[mid]
	if len(s)%2 == 0 {
		median = (s[mid-1] + s[mid]) / 2
	}
	return spread{Median: median, Min: s[0], Max: s[len(s)-1], N: len(s)}
}

// millis converts durations to float milliseconds for percentiles.
func millis(ds []time.Duration) []float64 {
	out := make([]float64, len(ds))
	for i, d := range ds {
		out[i] = float64(d) / float64(time.Millisecond)
	}
	return out
}

// latencyMetrics adds p50/p90/p99/max of ds, in ms, under prefix.
func latencyMetrics(m metrics, prefix string, ds []time.Duration) {
	ms := millis(ds)
	m[prefix+"_p50_ms"] = percentile(ms, 50)
	m[prefix+"_p90_ms"] = percentile(ms, 90)
	m[prefix+"_p99_ms"] = percentile(ms, 99)
	m[prefix+"_max_ms"] = percentile(ms, 100)
}

// metrics is one run's numbers by key; NaN means not measured.
type metrics map[string]float64

// get returns m[key], or NaN when missing, so that absent metrics read as
// "not measured" rather than zero.
func (m metrics) get(key string) float64 {
	if v, ok := m[key]; ok {
		return v
	}
	return math.NaN()
}

// summarizeRuns summarizes every key that appears in any run.
func summarizeRuns(runs []metrics) map[string]spread {
	keys := map[string]bool{}
	for _, r := range runs {
		for k := range r {
			keys[k] = true
		}
	}
	out := map[string]spread{}
	for k := range keys {
		xs := make([]float64, len(runs))
		for i, r := range runs {
			xs[i] = r.get(k)
		}
		out[k] = summarize(xs)
	}
	return out
}
