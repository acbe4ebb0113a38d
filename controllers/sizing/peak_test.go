package sizing

import (
	"testing"
	"time"
)

func TestPeakClaims(t *testing.T) {
	t0 := time.Date(2026, 12, 7, 9, 0, 0, 0, time.UTC)
	at := func(offsets ...time.Duration) []time.Time {
		ts := make([]time.Time, len(offsets))
		for i, o := range offsets {
			ts[i] = t0.Add(o)
		}
		return ts
	}
	s := time.Second
	cases := []struct {
		name   string
		claims []time.Time
		span   time.Duration
		want   int
	}{
		{name: "no claims", span: s, want: 0},
		{name: "one claim", claims: at(0), span: s, want: 1},
		{name: "claims a span apart are separate", claims: at(0, s, 2*s), span: s, want: 1},
		{name: "claims just within a span", claims: at(0, s-1, 2*s-2), span: s, want: 2},
		{name: "the densest stretch wins", claims: at(0, 5*s, 5*s+100*time.Millisecond, 5*s+200*time.Millisecond, 9*s), span: s, want: 3},
		{name: "a batch at one instant", claims: at(3*s, 3*s, 3*s, 3*s), span: s, want: 4},
		{name: "a longer span joins neighbours", claims: at(0, s, 2*s, 10*s), span: 3 * s, want: 3},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := PeakClaims(c.claims, c.span); got != c.want {
				t.Errorf("PeakClaims = %d, want %d", got, c.want)
			}
		})
	}
}
