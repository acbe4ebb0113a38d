package sizing

import "time"

// PeakClaims is the most claims that arrived within any stretch of time
// shorter than span, claims sorted oldest first. With span one refill time,
// it is the largest batch the pool had to serve before any replacement was
// ready: a pool that keeps that many warm serves a repeat of the batch warm,
// however briefly it lasted.
func PeakClaims(claims []time.Time, span time.Duration) int {
	peak, first := 0, 0
	for last, at := range claims {
		for at.Sub(claims[first]) >= span {
			first++
		}
		peak = max(peak, last-first+1)
	}
	return peak
}
