package controllers

import (
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/types"

	agentsv1alpha1 "github.com/sandboxset/warmpool/api/v1alpha1"
)

func TestStatusWrites(t *testing.T) {
	key := types.NamespacedName{Namespace: "ns", Name: "demo"}
	w := newStatusWrites()
	t0 := time.Unix(1_000_000, 0)

	if !w.seen(key, "1") || w.holdOff(key, t0, time.Second) != 0 {
		t.Fatal("before any write: every cached copy is current, and nothing waits")
	}
	if _, ok := w.lastWritten(key); ok {
		t.Fatal("before any write: no last status")
	}
	status := agentsv1alpha1.SandboxSetStatus{Replicas: 3, AvailableReplicas: 2}
	w.wrote(key, "7", t0, &status)
	status.AvailableReplicas = 3 // the caller's copy moves on
	if last, ok := w.lastWritten(key); !ok || last.AvailableReplicas != 2 {
		t.Errorf("lastWritten = %+v, %v; want the status as written", last, ok)
	}
	if w.seen(key, "6") || !w.seen(key, "7") {
		t.Error("only a cached copy at the write's resourceVersion shows it")
	}
	for _, tc := range []struct {
		after, want time.Duration
	}{{0, time.Second}, {300 * time.Millisecond, 700 * time.Millisecond}, {time.Second, 0}, {time.Minute, 0}} {
		if got := w.holdOff(key, t0.Add(tc.after), time.Second); got != tc.want {
			t.Errorf("%s after the write: holdOff = %s, want %s", tc.after, got, tc.want)
		}
	}
	if got := w.holdOff(key, t0, 0); got != 0 {
		t.Errorf("an interval of 0 holds nothing off, got %s", got)
	}
	w.forget(key)
	if _, ok := w.lastWritten(key); ok || w.holdOff(key, t0, time.Second) != 0 {
		t.Error("a forgotten SandboxSet starts over")
	}
}
