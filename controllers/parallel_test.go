package controllers

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestParallelSharesOneBudget runs two reconciles' writes at once and checks
// that together they never exceed PodWriteParallelism in flight.
func TestParallelSharesOneBudget(t *testing.T) {
	const budget, writes = 4, 40
	r := &SandboxSetReconciler{Options: Options{PodWriteParallelism: budget}, writeSlots: make(chan struct{}, budget)}
	var inFlight, most atomic.Int32
	started, release := make(chan struct{}), make(chan struct{})
	write := func(context.Context, int) {
		n := inFlight.Add(1)
		for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
		}
		started <- struct{}{}
		<-release
		inFlight.Add(-1)
	}
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() { r.parallel(t.Context(), writes, write) })
	}
	// Every step is bounded, so that a broken budget fails the test rather
	// than hanging it.
	step := func(what string, ch chan struct{}, send bool) {
		t.Helper()
		timer := time.NewTimer(10 * time.Second)
		defer timer.Stop()
		if send {
			select {
			case ch <- struct{}{}:
				return
			case <-timer.C:
			}
		} else {
			select {
			case <-ch:
				return
			case <-timer.C:
			}
		}
		t.Fatalf("no write %s within 10 s (%d in flight, most %d)", what, inFlight.Load(), most.Load())
	}
	// Fill the budget, then let one write finish for each that starts: a
	// write beyond the budget, had it started, would show in most.
	for range budget {
		step("started", started, false)
	}
	for range 2*writes - budget {
		step("took its release", release, true)
		step("started", started, false)
	}
	for range budget {
		step("took its release", release, true)
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	step("finished", done, false)
	if got := most.Load(); got != budget {
		t.Errorf("%d writes were in flight at once across two reconciles; want at most the budget, %d, and to reach it", got, budget)
	}
}
