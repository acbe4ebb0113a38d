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
		name       string
		moved, now time.Duration // after the write
		want       time.Duration
	}{
		{"moved at the write", 0, 300 * time.Millisecond, 700 * time.Millisecond},
		{"moved soon after it", 300 * time.Millisecond, 500 * time.Millisecond, 800 * time.Millisecond},
		{"moved long after it", time.Minute, time.Minute, time.Second},
		{"moved long after it, a second ago", time.Minute, time.Minute + time.Second, 0},
	} {
		w.unmoved(key)
		w.holdOff(key, t0.Add(tc.moved), time.Second)
		if got := w.holdOff(key, t0.Add(tc.now), time.Second); got != tc.want {
			t.Errorf("%s: holdOff = %s, want %s", tc.name, got, tc.want)
		}
	}
	w.holdOff(key, t0.Add(time.Minute), time.Second)
	w.unmoved(key)
	if got := w.holdOff(key, t0.Add(2*time.Minute), time.Second); got != time.Second {
		t.Errorf("a status that came back and moved again waits from its new move: holdOff = %s, want 1s", got)
	}
	w.wrote(key, "8", t0.Add(3*time.Minute), &status)
	if got := w.holdOff(key, t0.Add(3*time.Minute+time.Second), time.Second); got != time.Second {
		t.Errorf("a write starts over: a move a second after it waits a second, got %s", got)
	}
	if got := w.holdOff(key, t0.Add(3*time.Minute+time.Second), 0); got != 0 {
		t.Errorf("an interval of 0 holds nothing off, got %s", got)
	}
	w.forget(key)
	if _, ok := w.lastWritten(key); ok || w.holdOff(key, t0, time.Second) != 0 {
		t.Error("a forgotten SandboxSet starts over")
	}
}
