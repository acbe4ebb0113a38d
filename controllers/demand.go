package controllers

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	agentsv1alpha1 "github.com/sandboxset/warmpool/api/v1alpha1"
	"github.com/sandboxset/warmpool/controllers/sizing"
)

const (
	// maxTrackedClaims bounds each pool's claim history. It holds the long
	// window whole up to about 136 claims a second and the short one up to
	// 1,600: past that the rate reads low, never the memory high.
	maxTrackedClaims = 1 << 14

	// refillSmoothing is the weight of each new refill time in the moving
	// mean, once there are enough: about the last twenty count.
	refillSmoothing = 0.1

	// maxRefillSample clips a refill time: a Pod that took longer was held
	// back (quota, an image pull gone wrong), and its time would size the
	// pool for that outage long after it ended.
	maxRefillSample = 10 * time.Minute

	// fallbackRefillTime sizes a pool before any of its sandboxes has been
	// seen becoming ready: a slow Pod start, so the guess errs large.
	fallbackRefillTime = 30 * time.Second

	// defaultScaleDownDelay is the API's default, for specs built in Go.
	defaultScaleDownDelay = 5 * time.Minute
)

// demandTracker measures each pool's demand, as the Pod watch sees it, and
// sizes the pool from it with the sizing package. It is safe for
// concurrent use.
type demandTracker struct {
	mu    sync.Mutex
	pools map[types.NamespacedName]*poolDemand
}

// poolDemand is one pool's recent claims, refill times and sizes.
type poolDemand struct {
	claims []time.Time // every claim, oldest first
	cold   []time.Time // the claims served cold, oldest first

	refill        time.Duration // moving mean of observed refill times
	refillSamples int

	sizes  sizing.Stabilizer
	seeded bool // sizes starts from spec.replicas at the first snapshot
}

// demandSnapshot is a pool's demand at one instant and the size it asks for.
type demandSnapshot struct {
	rate           float64 // claims per second, per sizing.Rate
	refill         time.Duration
	refillObserved bool    // false: refill is fallbackRefillTime
	claims, cold   int     // claims in the last sizing.LongWindow, and how many were cold
	target         float64 // spec.autoscaling.targetWarmRatio, parsed, for metrics
	recommendation sizing.Recommendation
}

func newDemandTracker() *demandTracker {
	return &demandTracker{pools: map[types.NamespacedName]*poolDemand{}}
}

// observeClaim records a claim on the pool made at at. warm is true when it
// took a sandbox from the pool, false when the sandbox was created cold.
func (d *demandTracker) observeClaim(key types.NamespacedName, at time.Time, warm bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	p := d.pool(key)
	p.claims = insertSorted(p.claims, at)
	if !warm {
		p.cold = insertSorted(p.cold, at)
	}
	newest := p.claims[len(p.claims)-1]
	p.prune(newest)
}

// observeRefill records a pool Pod that became ready: from its creation to
// ready is one refill time. Every Pod counts, replacement or not: each
// shows how long the pool takes to grow by one.
func (d *demandTracker) observeRefill(key types.NamespacedName, created, ready time.Time) {
	// Both times are whole seconds: a Pod ready within its first second
	// reads 0, and counting those keeps the mean unbiased.
	took := ready.Sub(created)
	if created.IsZero() || took < 0 {
		return // clocks disagree; nothing to learn
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.pool(key).addRefill(min(took, maxRefillSample))
}

// snapshot sizes the pool at now under its autoscaling spec. current is
// spec.replicas: on the pool's first snapshot since the manager started
// (or since forget), the pool keeps at least that for the scale-down delay
// rather than shrinking at once on a history the restart lost. Sizes change as claims
// age out of the windows and delays run out, with no Pod event to say so:
// call it again within seconds while autoscaling is on.
func (d *demandTracker) snapshot(key types.NamespacedName, spec *agentsv1alpha1.AutoscalingSpec, current int32, now time.Time) (demandSnapshot, error) {
	policy, err := policyFor(spec)
	if err != nil {
		return demandSnapshot{}, fmt.Errorf("reading spec.autoscaling: %w", err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	p := d.pool(key)
	p.prune(now)
	if !p.seeded && policy.ScaleDownDelay > 0 {
		p.sizes.Observe(now, current, policy.ScaleDownDelay)
	}
	p.seeded = true

	s := demandSnapshot{
		rate:           sizing.Rate(p.claims, now),
		refill:         p.refill,
		refillObserved: p.refillSamples > 0,
		claims:         countSince(p.claims, now.Add(-sizing.LongWindow)),
		cold:           countSince(p.cold, now.Add(-sizing.LongWindow)),
		target:         policy.Target,
	}
	if !s.refillObserved {
		s.refill = fallbackRefillTime
	}
	s.recommendation = sizing.Size(policy, s.rate, sizing.PeakClaims(p.claims, s.refill), s.refill, now, &p.sizes)
	return s, nil
}

// forget drops a pool's history, when its SandboxSet is gone.
func (d *demandTracker) forget(key types.NamespacedName) {
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.pools, key)
}

func (d *demandTracker) pool(key types.NamespacedName) *poolDemand {
	p, ok := d.pools[key]
	if !ok {
		p = &poolDemand{}
		d.pools[key] = p
	}
	return p
}

// prune drops the claims older than the long window before now, and the
// oldest beyond maxTrackedClaims.
func (p *poolDemand) prune(now time.Time) {
	cutoff := now.Add(-sizing.LongWindow)
	p.claims = dropBefore(p.claims, cutoff)
	p.cold = dropBefore(p.cold, cutoff)
}

// addRefill folds one refill time into the moving mean: a plain mean of
// the first few, so one early outlier does not linger, then exponential.
func (p *poolDemand) addRefill(took time.Duration) {
	p.refillSamples++
	weight := max(1/float64(p.refillSamples), refillSmoothing)
	p.refill += time.Duration(weight * float64(took-p.refill))
}

// insertSorted adds t in order; claims mostly arrive in order, so this is
// nearly always an append.
func insertSorted(ts []time.Time, t time.Time) []time.Time {
	i := sort.Search(len(ts), func(i int) bool { return ts[i].After(t) })
	return slices.Insert(ts, i, t)
}

// dropBefore removes the times at or before cutoff and any beyond
// maxTrackedClaims, oldest first. It reslices rather than copies, so a claim
// costs no move of the whole window; the array's dropped front is freed
// when append next outgrows it, which keeps it within about twice the live
// length.
func dropBefore(ts []time.Time, cutoff time.Time) []time.Time {
	drop := sort.Search(len(ts), func(i int) bool { return ts[i].After(cutoff) })
	return ts[max(drop, len(ts)-maxTrackedClaims):]
}

func countSince(ts []time.Time, since time.Time) int {
	return len(ts) - sort.Search(len(ts), func(i int) bool { return ts[i].After(since) })
}

// policyFor parses a pool's autoscaling spec for the sizing package.
func policyFor(spec *agentsv1alpha1.AutoscalingSpec) (sizing.Policy, error) {
	if spec == nil {
		return sizing.Policy{}, errors.New("autoscaling is off")
	}
	target, err := sizing.ParseRatio(spec.TargetWarmRatio)
	if err != nil {
		return sizing.Policy{}, fmt.Errorf("targetWarmRatio: %w", err)
	}
	p := sizing.Policy{Target: target, Min: spec.MinReplicas, Max: spec.MaxReplicas, ScaleDownDelay: defaultScaleDownDelay}
	if spec.ScaleDownDelay != nil {
		p.ScaleDownDelay = spec.ScaleDownDelay.Duration
	}
	for _, s := range spec.Schedules {
		days := make([]string, len(s.Days))
		for i, d := range s.Days {
			days[i] = string(d)
		}
		schedule, err := sizing.ParseSchedule(s.Name, days, s.Start, s.End, s.TimeZone, s.MinReplicas)
		if err != nil {
			return sizing.Policy{}, fmt.Errorf("schedules: %w", err)
		}
		p.Schedules = append(p.Schedules, schedule)
	}
	return p, nil
}

// warmHitRatio is the fraction of the window's claims served warm, and
// false when there were none.
func (s demandSnapshot) warmHitRatio() (float64, bool) {
	if s.claims == 0 {
		return 0, false
	}
	return float64(s.claims-s.cold) / float64(s.claims), true
}

// status is the snapshot as the SandboxSet reports it. lastScale is when
// spec.replicas last changed, which the snapshot does not know.
func (s demandSnapshot) status(lastScale *metav1.Time) agentsv1alpha1.AutoscalingStatus {
	st := agentsv1alpha1.AutoscalingStatus{
		DesiredReplicas: s.recommendation.Replicas,
		ArrivalRate:     decimal(s.rate),
		RefillSeconds:   decimal(s.refill.Seconds()),
		Reason:          s.recommendation.Reason,
		LastScaleTime:   lastScale,
	}
	if _, ok := s.warmHitRatio(); ok {
		st.WarmHitRatio = ratioString(s.claims-s.cold, s.claims)
	}
	return st
}

// decimal writes x to three significant digits without an exponent, as
// status fields and kubectl columns read best: "3.2", "0.00833", "1230".
func decimal(x float64) string {
	if x == 0 || math.IsNaN(x) || math.IsInf(x, 0) {
		return "0"
	}
	exp := int(math.Floor(math.Log10(math.Abs(x))))
	places := max(0, 2-exp)
	unit := math.Pow10(exp - 2)
	return trimZeros(strconv.FormatFloat(math.Round(x/unit)*unit, 'f', places, 64))
}

// ratioString writes warm/total to four places, and "1" only when every
// claim was warm, so that 0.99996 is not shown as perfect.
func ratioString(warm, total int) string {
	if warm == total {
		return "1"
	}
	return trimZeros(strconv.FormatFloat(min(float64(warm)/float64(total), 0.9999), 'f', 4, 64))
}

func trimZeros(s string) string {
	if !strings.Contains(s, ".") {
		return s
	}
	return strings.TrimSuffix(strings.TrimRight(s, "0"), ".")
}
