package sizing

import (
	"math/rand/v2"
	"testing"
	"time"
)

func TestStabilizer(t *testing.T) {
	const delay = 5 * time.Minute
	steps := []struct {
		after time.Duration
		size  int32
		want  int32
	}{
		{after: 0, size: 10, want: 10},
		{after: time.Minute, size: 30, want: 30},    // up at once
		{after: time.Minute, size: 5, want: 30},     // down waits
		{after: 4 * time.Minute, size: 5, want: 30}, // 30 is exactly 5 minutes old: still held
		{after: time.Second, size: 5, want: 5},      // now it is older
		{after: time.Minute, size: 8, want: 8},      // a smaller rise is at once too
		{after: time.Minute, size: 3, want: 8},      // and a fall after it waits for it
		{after: 10 * time.Minute, size: 3, want: 3}, // everything older has gone
		{after: 0, size: 3, want: 3},                // repeats change nothing
	}
	var s Stabilizer
	now := t0
	for i, step := range steps {
		now = now.Add(step.after)
		if got := s.Observe(now, step.size, delay); got != step.want {
			t.Errorf("step %d: Observe(+%v, %d) = %d, want %d", i, step.after, step.size, got, step.want)
		}
	}
}

func TestStabilizerWithoutDelayFollowsDemand(t *testing.T) {
	var s Stabilizer
	for i, size := range []int32{5, 9, 2, 0, 7} {
		if got := s.Observe(t0.Add(time.Duration(i)*time.Second), size, 0); got != size {
			t.Errorf("Observe(%d) with no delay = %d", size, got)
		}
	}
	if got := s.Observe(t0.Add(time.Hour), 4, -time.Second); got != 4 {
		t.Errorf("a negative delay: Observe = %d, want 4", got)
	}
}

// TestStabilizerStaysSmall observes a size at every claim of an hour at 50
// claims per second, sizes wandering up and down, and compares each answer
// with the maximum over the raw history: the queue must agree and stay
// within one entry per size.
func TestStabilizerStaysSmall(t *testing.T) {
	const (
		delay   = 5 * time.Minute
		perSec  = 50
		maxSize = 200
	)
	rng := rand.New(rand.NewPCG(3, 4))
	var s Stabilizer
	type obs struct {
		at   time.Time
		size int32
	}
	// The naive answer: every observation of the last delay, counted by size.
	var history []obs
	var inWindow [maxSize + 1]int
	size := int32(100)
	for i := range 3600 * perSec {
		now := t0.Add(time.Duration(i) * time.Second / perSec)
		size = min(max(size+int32(rng.IntN(5))-2, 0), maxSize)
		got := s.Observe(now, size, delay)

		history = append(history, obs{now, size})
		inWindow[size]++
		for now.Sub(history[0].at) > delay {
			inWindow[history[0].size]--
			history = history[1:]
		}
		want := int32(maxSize)
		for inWindow[want] == 0 {
			want--
		}
		if got != want {
			t.Fatalf("observation %d: Observe = %d, want the window's maximum %d", i, got, want)
		}
		if s.Len() > maxSize+1 || cap(s.queue) > 4*(maxSize+1)+64 {
			t.Fatalf("observation %d: the stabilizer holds %d entries in an array of %d, want at most one per size", i, s.Len(), cap(s.queue))
		}
	}
}
