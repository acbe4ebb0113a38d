package main

import (
	"math"
	"testing"
	"time"
)

func TestParseMachineCPU(t *testing.T) {
	// user nice system idle iowait irq softirq steal guest guest_nice
	m, err := parseMachineCPU("cpu  200 100 300 5000 700 50 150 400 90 0")
	if err != nil {
		t.Fatal(err)
	}
	if m.busy != 8 || m.steal != 4 {
		t.Errorf("busy, steal = %g, %g s; want 8 (user+nice+system+irq+softirq, not idle, iowait or guest), 4", m.busy, m.steal)
	}
	for _, bad := range []string{"", "cpu0 1 2 3 4 5 6 7 8", "cpu 1 2 3 4 5 6 7", "cpu 1 2 x 4 5 6 7 8"} {
		if _, err := parseMachineCPU(bad); err == nil {
			t.Errorf("parseMachineCPU(%q) took it", bad)
		}
	}
}

func TestMachineCores(t *testing.T) {
	at := time.Now()
	earlier := machineCPU{at: at, busy: 10, steal: 1}
	busy, steal := machineCPU{at: at.Add(2 * time.Second), busy: 13, steal: 2}.cores(earlier)
	if math.Abs(busy-1.5) > 1e-9 || math.Abs(steal-0.5) > 1e-9 {
		t.Errorf("cores = %g busy, %g stolen; want 1.5, 0.5", busy, steal)
	}
	if busy, steal := earlier.cores(earlier); busy != 0 || steal != 0 {
		t.Errorf("no time between readings gave %g, %g cores", busy, steal)
	}
}
