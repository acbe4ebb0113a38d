package main

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// machineCPU is one reading of the machine's CPU time from /proc/stat, in
// seconds summed over all cores: what ran (busy), and what the hypervisor
// gave to other guests while this one wanted to run (steal).
type machineCPU struct {
	at          time.Time
	busy, steal float64
}

// parseMachineCPU reads /proc/stat's first line: "cpu user nice system
// idle iowait irq softirq steal ...", in clock ticks. Guest time is already
// counted in user.
func parseMachineCPU(line string) (machineCPU, error) {
	fields := strings.Fields(line)
	if len(fields) < 9 || fields[0] != "cpu" {
		return machineCPU{}, fmt.Errorf("not the cpu line of /proc/stat: %q", line)
	}
	var ticks [8]float64
	for i := range ticks {
		v, err := strconv.ParseFloat(fields[i+1], 64)
		if err != nil {
			return machineCPU{}, fmt.Errorf("/proc/stat cpu field %d: %w", i+1, err)
		}
		ticks[i] = v
	}
	user, nice, system, irq, softirq, steal := ticks[0], ticks[1], ticks[2], ticks[5], ticks[6], ticks[7]
	return machineCPU{busy: (user + nice + system + irq + softirq) / clockTicks, steal: steal / clockTicks}, nil
}

func readMachineCPU() (machineCPU, error) {
	stat, err := os.ReadFile("/proc/stat")
	if err != nil {
		return machineCPU{}, fmt.Errorf("reading /proc/stat: %w", err)
	}
	line, _, _ := strings.Cut(string(stat), "\n")
	m, err := parseMachineCPU(line)
	m.at = time.Now()
	return m, err
}

// cores returns the cores busy and stolen on average from earlier to m.
func (m machineCPU) cores(earlier machineCPU) (busy, steal float64) {
	secs := m.at.Sub(earlier.at).Seconds()
	if secs <= 0 {
		return 0, 0
	}
	return (m.busy - earlier.busy) / secs, (m.steal - earlier.steal) / secs
}

// A cluster is quiet once the whole machine has used less than quietCores
// in each of quietWindows one-second windows in a row. Right after a fill
// of thousands of Pods the control plane still works through it (garbage
// collection, etcd, the watch caches) for a while; claims measured then
// are measured against that, not against the claims' own load.
const (
	quietCores   = 0.5
	quietWindows = 3
	quietLimit   = 2 * time.Minute
)

// waitQuiet waits until the machine is quiet, or quietLimit has passed,
// and returns how long it waited and the cores busy in the last window.
func waitQuiet(ctx context.Context) (time.Duration, float64, error) {
	start := time.Now()
	last, err := readMachineCPU()
	if err != nil {
		return 0, 0, err
	}
	var busy float64
	for quiet := 0; quiet < quietWindows && time.Since(start) < quietLimit; {
		select {
		case <-ctx.Done():
			return time.Since(start), busy, ctx.Err()
		case <-time.After(time.Second):
		}
		now, err := readMachineCPU()
		if err != nil {
			return time.Since(start), busy, err
		}
		busy, _ = now.cores(last)
		last = now
		if busy < quietCores {
			quiet++
		} else {
			quiet = 0
		}
	}
	return time.Since(start), busy, nil
}
