package sizing

import (
	"sort"
	"time"
)

// The windows Rate reads. The short one sees a burst within seconds; the
// long one keeps a quiet spell between claims from reading as no demand.
const (
	ShortWindow = 10 * time.Second
	LongWindow  = 2 * time.Minute
)

// Rate is the claim arrival rate at now, in claims per second: the larger
// of the rates over the last ShortWindow and the last LongWindow. claims
// must be sorted oldest first; claims after now (clock skew between the
// stamping webhook and the manager) count as happening now.
func Rate(claims []time.Time, now time.Time) float64 {
	return max(windowRate(claims, now, ShortWindow), windowRate(claims, now, LongWindow))
}

// windowRate counts the claims in (now−window, now] and beyond, per second.
func windowRate(claims []time.Time, now time.Time, window time.Duration) float64 {
	since := now.Add(-window)
	first := sort.Search(len(claims), func(i int) bool { return claims[i].After(since) })
	return float64(len(claims)-first) / window.Seconds()
}
