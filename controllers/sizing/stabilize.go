package sizing

import "time"

// Stabilizer remembers recent demand sizes, so that the pool grows at once
// and shrinks only once demand has stayed lower for a whole delay. It keeps
// a monotone queue: each size is dropped as soon as a later size at least
// as large arrives, because it can never again be the largest. What remains
// is strictly decreasing in size, so it holds at most one entry per size
// from 0 to the largest seen, however often sizes are observed.
//
// The zero value is ready to use. It is not safe for concurrent use.
type Stabilizer struct {
	queue []observation
	head  int // queue[head:] is live; the rest awaits compaction
}

type observation struct {
	at   time.Time
	size int32
}

// Observe records size at now and returns the largest size observed in
// the last delay, this one included.
func (s *Stabilizer) Observe(now time.Time, size int32, delay time.Duration) int32 {
	for len(s.queue) > s.head && s.queue[len(s.queue)-1].size <= size {
		s.queue = s.queue[:len(s.queue)-1]
	}
	s.queue = append(s.queue, observation{at: now, size: size})
	// The newest entry always stays, whatever the delay.
	for s.head < len(s.queue)-1 && now.Sub(s.queue[s.head].at) > delay {
		s.head++
	}
	s.compact()
	return s.queue[s.head].size
}

// Len is how many observations the stabilizer holds.
func (s *Stabilizer) Len() int {
	return len(s.queue) - s.head
}

// compact moves the live entries to the front once the dead ones are the
// majority, so the backing array stays within twice the live length.
func (s *Stabilizer) compact() {
	if s.head > 16 && s.head*2 >= len(s.queue) {
		s.queue = s.queue[:copy(s.queue, s.queue[s.head:])]
		s.head = 0
	}
}
