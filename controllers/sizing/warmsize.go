package sizing

import "time"

// MaxTarget is the highest target WarmSize sizes for: a target of 1, every
// claim warm, is out of reach of any finite pool while claims arrive at
// random, so it means one cold claim in a billion.
const MaxTarget = 1 - 1e-9

// WarmSize is the smallest pool, at most limit, that serves at least the
// target fraction of claims warm when claims arrive at rate per second and
// a taken sandbox takes refill to be replaced (see the package doc). It is
// 0 when there is no demand, and limit when no pool up to limit meets the
// target. Targets above MaxTarget are sized as MaxTarget.
func WarmSize(rate float64, refill time.Duration, target float64, limit int32) int32 {
	target = min(target, MaxTarget)
	load := rate * refill.Seconds()
	// Also false for NaN: an unreadable rate asks for nothing.
	if !(load > 0) || !(target > 0) || limit <= 0 {
		return 0
	}
	cold := 1.0 // B(0, load): with no slot, every claim is cold
	for size := int32(1); size <= limit; size++ {
		cold = nextErlangB(cold, size, load)
		if 1-cold >= target {
			return size
		}
	}
	return limit
}

// nextErlangB is B(size, load) from B(size−1, load): the standard recurrence,
// stable for any size, unlike the factorials of the closed form.
func nextErlangB(prev float64, size int32, load float64) float64 {
	return load * prev / (float64(size) + load*prev)
}
