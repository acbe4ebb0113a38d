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

// An onset, claims that began within the short window after a quiet
// spell, is read over the time since it began, but over no less than
// minOnsetSpan and only from minOnsetClaims claims on: fewer would make a
// couple of claims in a blink read as a flood.
const (
	minOnsetSpan   = 2 * time.Second
	minOnsetClaims = 3
)

// Rate is the claim arrival rate at now, in claims per second: the larger
// of the rates over the last ShortWindow and the last LongWindow. claims
// must be sorted oldest first; claims after now (clock skew between the
// stamping webhook and the manager) count as happening now.
func Rate(claims []time.Time, now time.Time) float64 {
	return max(shortRate(claims, now), windowRate(claims, now, LongWindow))
}

// shortRate is the rate over the short window, or over the onset when the
// claims in it began after a quiet spell: read over the whole window, a
// pool waking from idle would be sized for a fraction of its demand until
// the window filled.
func shortRate(claims []time.Time, now time.Time) float64 {
	since := now.Add(-ShortWindow)
	first := sort.Search(len(claims), func(i int) bool { return claims[i].After(since) })
	n := len(claims) - first
	if n < minOnsetClaims || (first > 0 && claims[first].Sub(claims[first-1]) <= ShortWindow) {
		return float64(n) / ShortWindow.Seconds()
	}
	return float64(n) / max(now.Sub(claims[first]), minOnsetSpan).Seconds()
}

// windowRate counts the claims in (now−window, now] and beyond, per second.
func windowRate(claims []time.Time, now time.Time, window time.Duration) float64 {
	since := now.Add(-window)
	first := sort.Search(len(claims), func(i int) bool { return claims[i].After(since) })
	return float64(len(claims)-first) / window.Seconds()
}
