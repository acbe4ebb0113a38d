package controllers

import (
	"context"
	"time"

	"k8s.io/client-go/util/workqueue"
)

// podWriteTimeout bounds one Pod write.
const podWriteTimeout = 30 * time.Second

// parallel runs fn for 0..n-1 with at most PodWriteParallelism writes in
// flight across every reconcile: pools refilling at once share one budget,
// so together they neither outrun the API server's in-flight limit (and get
// 429s) nor hold hundreds of requests in memory.
//
// Writes outlive the reconcile's context on purpose: a manager shutting down
// lets requests it has recorded expectations for finish, so the next leader
// sees them in its first list instead of creating them again.
func (r *SandboxSetReconciler) parallel(ctx context.Context, n int, fn func(ctx context.Context, i int)) {
	if n == 0 {
		return
	}
	writeCtx := context.WithoutCancel(ctx)
	workqueue.ParallelizeUntil(writeCtx, r.Options.PodWriteParallelism, n, func(i int) {
		r.writeSlots <- struct{}{}
		defer func() { <-r.writeSlots }()
		ctx, cancel := context.WithTimeout(writeCtx, podWriteTimeout)
		defer cancel()
		fn(ctx, i)
	})
}

// parallelErrors is parallel for functions that may fail; it returns every error.
func (r *SandboxSetReconciler) parallelErrors(ctx context.Context, n int, fn func(ctx context.Context, i int) error) []error {
	errs := make([]error, n)
	r.parallel(ctx, n, func(ctx context.Context, i int) { errs[i] = fn(ctx, i) })
	return errs
}
