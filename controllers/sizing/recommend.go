package sizing

import (
	"math"
	"time"
)

// Reasons a recommendation gives for its size. A schedule's reason is
// ReasonSchedulePrefix followed by its name.
const (
	// ReasonDemand: the size serves the observed claims at the target.
	ReasonDemand = "demand"
	// ReasonBurst: the size serves again, warm, the largest batch of claims
	// that recently arrived within one refill time, which is more than the
	// claims' rate asks for.
	ReasonBurst = "burst"
	// ReasonScaleDownDelayed: demand has fallen, but not for the whole
	// scale-down delay; the pool keeps the largest recent size.
	ReasonScaleDownDelayed = "scale-down delayed"
	// ReasonMin: demand asks for less than minReplicas.
	ReasonMin = "min"
	// ReasonMax: demand or a floor asks for more than maxReplicas.
	ReasonMax = "max"
	// ReasonSchedulePrefix: an open schedule's floor is above demand.
	ReasonSchedulePrefix = "schedule "
)

// Policy is a pool's autoscaling settings, parsed.
type Policy struct {
	Target         float64
	Min, Max       int32
	ScaleDownDelay time.Duration
	Schedules      []Schedule
}

// Recommendation is a pool size and why.
type Recommendation struct {
	Replicas int32
	Reason   string
}

// Recommend applies the policy's floors and ceiling at now to a demand
// size, demand being what WarmSize asks for (after Stabilizer, when
// scaling down). The highest floor wins over a lower demand, min over a
// schedule with the same floor, and the ceiling over everything.
func Recommend(p Policy, demand int32, now time.Time) Recommendation {
	rec := Recommendation{Replicas: demand, Reason: ReasonDemand}
	floor := Recommendation{Replicas: p.Min, Reason: ReasonMin}
	for _, s := range p.Schedules {
		if s.MinReplicas > floor.Replicas && s.Active(now) {
			floor = Recommendation{Replicas: s.MinReplicas, Reason: ReasonSchedulePrefix + s.Name}
		}
	}
	if floor.Replicas > rec.Replicas {
		rec = floor
	}
	if rec.Replicas > p.Max {
		rec = Recommendation{Replicas: p.Max, Reason: ReasonMax}
	}
	return rec
}

// Size is the whole decision for one pool at now: the demand size for the
// observed rate and refill time, or peak, the largest recent batch of claims
// within one refill time (PeakClaims), if larger; held up by the stabilizer
// for the scale-down delay, then bounded by the policy. The reason is the
// delay's only where the delay changes the size.
func Size(p Policy, rate float64, peak int, refill time.Duration, now time.Time, held *Stabilizer) Recommendation {
	// One past the ceiling, so that demand beyond it reads as "max".
	limit := p.Max
	if limit < math.MaxInt32 {
		limit++
	}
	demand, why := WarmSize(rate, refill, p.Target, limit), ReasonDemand
	if batch := int32(min(peak, int(limit))); batch > demand {
		demand, why = batch, ReasonBurst
	}
	stable := held.Observe(now, demand, p.ScaleDownDelay)
	rec := Recommend(p, stable, now)
	if stable > demand {
		if undelayed := Recommend(p, demand, now); undelayed.Replicas == rec.Replicas {
			rec = undelayed
		} else if rec.Reason == ReasonDemand {
			rec.Reason = ReasonScaleDownDelayed
		}
	}
	if rec.Reason == ReasonDemand {
		rec.Reason = why
	}
	return rec
}
