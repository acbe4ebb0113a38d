package controllers

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
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
	// Fill the budget, then let one write finish for each that starts: a
	// write beyond the budget, had it started, would show in most.
	for range budget {
		<-started
	}
	for range 2*writes - budget {
		release <- struct{}{}
		<-started
	}
	for range budget {
		release <- struct{}{}
	}
	wg.Wait()
	if got := most.Load(); got != budget {
		t.Errorf("%d writes were in flight at once across two reconciles; want at most the budget, %d, and to reach it", got, budget)
	}
}
