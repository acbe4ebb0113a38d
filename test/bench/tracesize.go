package main

// The pure arithmetic of the trace-replay benchmark: how big each fixed
// pool is, what a trace demands over time, how many Pod-seconds a pool
// kept, and whether the autoscaled pool met the goals.

import (
	"fmt"
	"math"
	"sort"
	"time"
)

// Variants of a pool under one trace, as they appear in tables and JSON.
const (
	variantMean = "mean-sized"
	variantPeak = "peak-sized"
	variantAuto = "autoscaled"
	demandLine  = "demand" // the chart's line of what a trace asks for
)

var traceVariants = []string{variantMean, variantPeak, variantAuto}

// refillEstimate is how long a pool takes to replace a claimed sandbox on
// this cluster: from the claim until the pool is full again, measured.
type refillEstimate struct {
	Mean    time.Duration `json:"meanNanoseconds"`
	P90     time.Duration `json:"p90Nanoseconds"`
	Max     time.Duration `json:"maxNanoseconds"`
	Samples int           `json:"samples"`
}

// newRefillEstimate summarizes refill samples; it needs at least one.
func newRefillEstimate(samples []time.Duration) (refillEstimate, error) {
	if len(samples) == 0 {
		return refillEstimate{}, fmt.Errorf("no refill measured")
	}
	var sum time.Duration
	for _, s := range samples {
		sum += s
	}
	ms := millis(samples)
	return refillEstimate{
		Mean:    sum / time.Duration(len(samples)),
		P90:     time.Duration(percentile(ms, 90) * float64(time.Millisecond)),
		Max:     time.Duration(percentile(ms, 100) * float64(time.Millisecond)),
		Samples: len(samples),
	}, nil
}

// littleSize is Little's law for a warm pool: a claimed slot is empty for
// the refill time, so at rate λ about λ × refill slots are empty at once.
// At least 1.
func littleSize(rate float64, refill time.Duration) int {
	return max(1, int(math.Ceil(rate*refill.Seconds()-1e-9)))
}

// mostWithin is the most arrivals (ascending) within any half-open window
// [t, t+w): what a pool that cannot refill faster than w must hold to serve
// them all warm. It covers a burst and a rate peak alike.
func mostWithin(arrivals []time.Duration, w time.Duration) int {
	most, lo := 0, 0
	for hi, at := range arrivals {
		for at-arrivals[lo] >= w {
			lo++
		}
		most = max(most, hi-lo+1)
	}
	return most
}

// poolSizes are a trace's pools and the reasons for their sizes.
type poolSizes struct {
	Mean    int    `json:"mean"`
	MeanWhy string `json:"meanWhy"`
	Peak    int    `json:"peak"`
	PeakWhy string `json:"peakWhy"`
	// The autoscaled pool starts at Mean, within [AutoMin, AutoMax].
	AutoInitial int    `json:"autoInitial"`
	AutoMin     int    `json:"autoMin"`
	AutoMax     int    `json:"autoMax"`
	AutoWhy     string `json:"autoWhy"`
}

// sizePools sizes the fixed pools for a trace's arrivals as an operator
// who knew the trace would: the mean-sized pool by Little's law at the mean
// rate and mean refill time; the peak-sized one for the most claims that
// arrive within any p90 refill time (a burst, or the busiest moment).
func sizePools(arrivals []time.Duration, length time.Duration, refill refillEstimate) poolSizes {
	rate := float64(len(arrivals)) / length.Seconds()
	var s poolSizes
	s.Mean = littleSize(rate, refill.Mean)
	s.MeanWhy = fmt.Sprintf("⌈%.2f claims/s (the trace's mean) × %.2f s (mean refill)⌉, Little's law", rate, refill.Mean.Seconds())
	s.Peak = max(s.Mean, mostWithin(arrivals, refill.P90))
	s.PeakWhy = fmt.Sprintf("the most claims arriving within any %.2f s (p90 refill) of the trace", refill.P90.Seconds())
	s.AutoInitial, s.AutoMin, s.AutoMax = s.Mean, 1, 2*s.Peak
	s.AutoWhy = fmt.Sprintf("starts at the mean size; min 1; max 2 × the peak size, so the cap never decides")
	return s
}

// demandSeries is, every step over [0, length], how many claims arrived
// within the window before: with the refill time as the window, the warm
// Pods a pool needs at that moment to serve them all.
func demandSeries(arrivals []time.Duration, window, step, length time.Duration) *availableSeries {
	s := &availableSeries{}
	lo, hi := 0, 0
	for t := time.Duration(0); t <= length; t += step {
		for hi < len(arrivals) && arrivals[hi] <= t {
			hi++
		}
		for lo < hi && arrivals[lo] <= t-window {
			lo++
		}
		s.Seconds = append(s.Seconds, math.Round(t.Seconds()*1000)/1000)
		s.Pods = append(s.Pods, hi-lo)
	}
	return s
}

// stepsBetween is a step function's points over [from, to]: its value at
// from, every change after it up to to, and its value at to. history is
// ascending; before its first point the value is 0.
func stepsBetween(history []availPoint, from, to time.Time) []availPoint {
	first := sort.Search(len(history), func(i int) bool { return history[i].at.After(from) })
	before := 0
	if first > 0 {
		before = history[first-1].available
	}
	out := []availPoint{{at: from, available: before}}
	for _, p := range history[first:] {
		if p.at.After(to) {
			break
		}
		out = append(out, p)
	}
	return append(out, availPoint{at: to, available: out[len(out)-1].available})
}

// integrate is the area under a step function given as stepsBetween
// returns it, in unit-seconds: Pod-seconds for a count of Pods.
func integrate(points []availPoint) float64 {
	area := 0.0
	for i := 1; i < len(points); i++ {
		area += float64(points[i-1].available) * points[i].at.Sub(points[i-1].at).Seconds()
	}
	return area
}

// stepRange is the lowest and highest value of a step function.
func stepRange(points []availPoint) (lo, hi int) {
	if len(points) == 0 {
		return 0, 0
	}
	lo, hi = points[0].available, points[0].available
	for _, p := range points {
		lo, hi = min(lo, p.available), max(hi, p.available)
	}
	return lo, hi
}

// --- the goals ---------------------------------------------------------

// podBudget is how many times the Pod-seconds of the best fixed pool that
// meets the target the autoscaled pool may keep.
const podBudget = 1.2

// variantFigures are what the goals compare of one variant.
type variantFigures struct {
	WarmFraction float64 // NaN when no claim was served
	PodSeconds   float64 // NaN when not measured
}

// goalChecks say whether the autoscaled pool met the goals on one
// trace. Each verdict is yes, no, tie or n/a, with the reason in the note.
type goalChecks struct {
	Target          float64 `json:"targetWarmRatio"`
	MeetsTarget     string  `json:"meetsTarget"`
	BestFixed       string  `json:"bestFixedMeetingTarget,omitempty"`
	PodSecondsRatio float64 `json:"podSecondsRatio,omitempty"`
	WithinBudget    string  `json:"withinPodBudget"`
	WithinNote      string  `json:"withinPodBudgetNote,omitempty"`
	BeatsMean       string  `json:"beatsMeanSized"`
	Supported       bool    `json:"autoscalingSupported"`
}

const (
	verdictYes = "yes"
	verdictNo  = "no"
	verdictTie = "tie"
	verdictNA  = "n/a"
)

// checkGoals applies the goals to one trace's figures: the
// autoscaled pool meets its warm-hit target, keeps at most podBudget × the
// Pod-seconds of the cheapest fixed pool that also meets it, and serves
// more claims warm than the mean-sized pool. When the build does not
// support autoscaling, the autoscaled pool is a fixed one and none apply.
func checkGoals(target float64, mean, peak, auto variantFigures, supported bool) goalChecks {
	g := goalChecks{Target: target, Supported: supported,
		MeetsTarget: verdictNA, WithinBudget: verdictNA, BeatsMean: verdictNA}
	if !supported {
		g.WithinNote = "autoscaling is not supported by this build: the autoscaled pool stayed at its initial size"
		return g
	}
	if math.IsNaN(auto.WarmFraction) {
		g.WithinNote = "the autoscaled pool served no claim"
		return g
	}
	g.MeetsTarget = yesNo(auto.WarmFraction >= target)
	switch {
	case math.IsNaN(mean.WarmFraction):
	case auto.WarmFraction > mean.WarmFraction:
		g.BeatsMean = verdictYes
	case auto.WarmFraction == mean.WarmFraction:
		g.BeatsMean = verdictTie
	default:
		g.BeatsMean = verdictNo
	}
	best, bestPods := "", math.Inf(1)
	for _, f := range []struct {
		name string
		v    variantFigures
	}{{variantMean, mean}, {variantPeak, peak}} {
		if f.v.WarmFraction >= target && f.v.PodSeconds < bestPods {
			best, bestPods = f.name, f.v.PodSeconds
		}
	}
	switch {
	case best == "":
		g.WithinNote = "no fixed pool met the target"
	case math.IsNaN(auto.PodSeconds) || bestPods <= 0:
		g.WithinNote = "Pod-seconds not measured"
	case g.MeetsTarget != verdictYes:
		g.BestFixed, g.PodSecondsRatio = best, auto.PodSeconds/bestPods
		g.WithinNote = "the autoscaled pool missed the target, so its Pod-seconds buy nothing"
		g.WithinBudget = verdictNo
	default:
		g.BestFixed, g.PodSecondsRatio = best, auto.PodSeconds/bestPods
		g.WithinBudget = yesNo(g.PodSecondsRatio <= podBudget)
	}
	return g
}

func yesNo(b bool) string {
	if b {
		return verdictYes
	}
	return verdictNo
}
