package main

// Claim arrival traces for the trace-replay benchmark of pool autoscaling
// (-trace-replay): pure, seeded generators of arrival times. A trace is a
// list of rate segments, Poisson within each, plus bursts of claims packed
// into a short window. Time is compressed: a whole "day" lasts minutes, so
// that the run fits in about a quarter of an hour on two cores.

import (
	"fmt"
	"hash/fnv"
	"math"
	"math/rand/v2"
	"slices"
	"time"
)

// rateSegment is a stretch of a trace where claims arrive as a Poisson
// process of a constant rate.
type rateSegment struct {
	Start  time.Duration `json:"startNanoseconds"`
	Length time.Duration `json:"lengthNanoseconds"`
	Rate   float64       `json:"ratePerSecond"`
}

// claimBurst is Size claims arriving uniformly at random within
// [At, At+Width), on top of the segments' arrivals.
type claimBurst struct {
	At    time.Duration `json:"atNanoseconds"`
	Size  int           `json:"size"`
	Width time.Duration `json:"widthNanoseconds"`
}

// arrivalTrace is a claim arrival pattern, in benchmark (compressed) time.
type arrivalTrace struct {
	Name     string        `json:"name"`
	Title    string        `json:"title"`
	Length   time.Duration `json:"lengthNanoseconds"`
	Segments []rateSegment `json:"segments"`
	Bursts   []claimBurst  `json:"bursts,omitempty"`
}

// Trace names, as -traces takes them.
const (
	traceSteady  = "steady"
	traceDiurnal = "diurnal"
	traceBursts  = "bursts"
	traceIdle    = "idle"
)

var traceNames = []string{traceSteady, traceDiurnal, traceBursts, traceIdle}

// arrivals draws the trace's arrival times, ascending, all in [0, Length).
// The same seed gives the same times; each trace draws from its own stream,
// so adding a trace does not change the others.
func (t arrivalTrace) arrivals(seed uint64) []time.Duration {
	h := fnv.New64a()
	_, _ = h.Write([]byte(t.Name))
	rng := rand.New(rand.NewPCG(seed, h.Sum64()))
	var out []time.Duration
	for _, s := range t.Segments {
		if s.Rate <= 0 {
			continue
		}
		end := s.Start + s.Length
		for at := s.Start; ; {
			at += time.Duration(rng.ExpFloat64() / s.Rate * float64(time.Second))
			if at >= end {
				break
			}
			out = append(out, at)
		}
	}
	for _, b := range t.Bursts {
		for range b.Size {
			out = append(out, b.At+time.Duration(rng.Float64()*float64(b.Width)))
		}
	}
	slices.Sort(out)
	return out
}

// expectedClaims is how many claims the trace sends on average.
func (t arrivalTrace) expectedClaims() float64 {
	n := 0.0
	for _, s := range t.Segments {
		n += s.Rate * s.Length.Seconds()
	}
	for _, b := range t.Bursts {
		n += float64(b.Size)
	}
	return n
}

// peakSegmentRate is the highest Poisson rate of the trace, bursts aside.
func (t arrivalTrace) peakSegmentRate() float64 {
	peak := 0.0
	for _, s := range t.Segments {
		peak = max(peak, s.Rate)
	}
	return peak
}

// largestBurst is the size of the trace's largest burst, 0 for none.
func (t arrivalTrace) largestBurst() int {
	largest := 0
	for _, b := range t.Bursts {
		largest = max(largest, b.Size)
	}
	return largest
}

// steadyTrace is a constant rate for length.
func steadyTrace(rate float64, length time.Duration) arrivalTrace {
	return arrivalTrace{
		Name: traceSteady, Length: length,
		Title:    fmt.Sprintf("steady: %.3g claims/s for %s", rate, length),
		Segments: []rateSegment{{Start: 0, Length: length, Rate: rate}},
	}
}

// diurnalTrace is one compressed day: the rate rises smoothly from trough
// to peak at half the length and falls back, as trough + (peak − trough) ×
// (1 − cos 2πt/length)/2, held constant over each of steps segments (an
// even number, so that the middle segment starts exactly at the peak).
func diurnalTrace(trough, peak float64, length time.Duration, steps int) arrivalTrace {
	steps += steps % 2
	t := arrivalTrace{
		Name: traceDiurnal, Length: length,
		Title: fmt.Sprintf("diurnal: %.3g → %.3g → %.3g claims/s (%.0f× peak) over %s",
			trough, peak, trough, peak/trough, length),
	}
	step := length / time.Duration(steps)
	for i := range steps {
		phase := 2 * math.Pi * float64(i) / float64(steps)
		t.Segments = append(t.Segments, rateSegment{
			Start: time.Duration(i) * step, Length: step,
			Rate: trough + (peak-trough)*(1-math.Cos(phase))/2,
		})
	}
	// The last segment takes what integer division left over.
	last := &t.Segments[len(t.Segments)-1]
	last.Length = length - last.Start
	return t
}

// burstsTrace is a low background rate with bursts of size claims, each
// arriving within width, at the given offsets.
func burstsTrace(background float64, length time.Duration, size int, width time.Duration, at ...time.Duration) arrivalTrace {
	t := arrivalTrace{
		Name: traceBursts, Length: length,
		Title: fmt.Sprintf("bursts: %.3g claims/s, plus %d bursts of %d claims within %s, over %s",
			background, len(at), size, width, length),
		Segments: []rateSegment{{Start: 0, Length: length, Rate: background}},
	}
	for _, a := range at {
		t.Bursts = append(t.Bursts, claimBurst{At: a, Size: size, Width: width})
	}
	return t
}

// idleNightTrace is busy, then a long near-idle night, then busy again.
func idleNightTrace(busyRate float64, busy time.Duration, nightRate float64, night time.Duration) arrivalTrace {
	return arrivalTrace{
		Name: traceIdle, Length: 2*busy + night,
		Title: fmt.Sprintf("idle night: %.3g claims/s for %s, %.3g/s for %s, %.3g/s for %s",
			busyRate, busy, nightRate, night, busyRate, busy),
		Segments: []rateSegment{
			{Start: 0, Length: busy, Rate: busyRate},
			{Start: busy, Length: night, Rate: nightRate},
			{Start: busy + night, Length: busy, Rate: busyRate},
		},
	}
}

// traceCatalog is every trace of a run, full or quick. The full traces last
// 8½ minutes in all; the quick ones a little over 2. Every claim costs the
// cluster up to six Pod writes per pool (a refill or a cold sandbox, its
// binding, its Ready patch, and its release's deletion, which kwok finishes),
// and three pools take each claim: rates stay low enough that the local
// cluster's simulated kubelet (kwok, four workers) keeps up on two shared
// cores outside the bursts.
func traceCatalog(quick bool) []arrivalTrace {
	if quick {
		return []arrivalTrace{
			steadyTrace(2, 20*time.Second),
			diurnalTrace(0.4, 4, 40*time.Second, 20),
			burstsTrace(0.5, 30*time.Second, 50, time.Second, 10*time.Second),
			idleNightTrace(2, 10*time.Second, 0.05, 20*time.Second),
		}
	}
	return []arrivalTrace{
		steadyTrace(3, 90*time.Second),
		diurnalTrace(0.5, 5, 150*time.Second, 60),
		burstsTrace(0.5, 120*time.Second, 200, time.Second, 30*time.Second, 80*time.Second),
		idleNightTrace(3, 40*time.Second, 0.05, 70*time.Second),
	}
}

// dayLength is the trace that stands for one day, for the compression
// factor: the diurnal trace's length, or, without one, the longest trace.
func dayLength(traces []arrivalTrace) time.Duration {
	var longest time.Duration
	for _, t := range traces {
		if t.Name == traceDiurnal {
			return t.Length
		}
		longest = max(longest, t.Length)
	}
	return longest
}
