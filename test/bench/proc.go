package main

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// clockTicks is USER_HZ, the unit of /proc/<pid>/stat's CPU times. It is
// 100 on every Linux architecture Go supports, and reading it needs cgo.
const clockTicks = 100

// procSample is one reading of a process's cost.
type procSample struct {
	CPUSeconds float64 // user + system time since the process started
	RSSKiB     int64   // resident now (VmRSS)
	PeakKiB    int64   // resident peak (VmHWM) since start or the last resetPeak
}

// readProc reads a process's CPU time from /proc/<pid>/stat and its
// resident memory from /proc/<pid>/status.
func readProc(pid int) (procSample, error) {
	var s procSample
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return s, fmt.Errorf("reading the stat of pid %d: %w", pid, err)
	}
	// The command name may hold spaces and parentheses: fields are counted
	// from after its closing parenthesis, where field 3 (state) starts.
	i := strings.LastIndexByte(string(stat), ')')
	if i < 0 {
		return s, fmt.Errorf("pid %d: malformed stat %q", pid, stat)
	}
	fields := strings.Fields(string(stat[i+1:]))
	if len(fields) < 13 {
		return s, fmt.Errorf("pid %d: stat has %d fields after the name, want at least 13", pid, len(fields))
	}
	// utime and stime are fields 14 and 15, i.e. 11 and 12 after state.
	utime, err1 := strconv.ParseInt(fields[11], 10, 64)
	stime, err2 := strconv.ParseInt(fields[12], 10, 64)
	if err1 != nil || err2 != nil {
		return s, fmt.Errorf("pid %d: parsing utime %q and stime %q", pid, fields[11], fields[12])
	}
	s.CPUSeconds = float64(utime+stime) / clockTicks

	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return s, fmt.Errorf("reading the status of pid %d: %w", pid, err)
	}
	defer func() { _ = f.Close() }()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		key, value, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		kib, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(value), " kB"), 10, 64)
		if err != nil {
			continue
		}
		switch key {
		case "VmRSS":
			s.RSSKiB = kib
		case "VmHWM":
			s.PeakKiB = kib
		}
	}
	if err := sc.Err(); err != nil {
		return s, fmt.Errorf("reading the status of pid %d: %w", pid, err)
	}
	return s, nil
}

// resetPeak resets a process's VmHWM to its current RSS (Linux
// clear_refs 5), so a scenario's peak is its own, not the lifetime's.
func resetPeak(pid int) error {
	if err := os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0); err != nil {
		return fmt.Errorf("resetting the peak RSS of pid %d: %w", pid, err)
	}
	return nil
}

// costMeter measures what the control plane's processes spend over one
// scenario run.
type costMeter struct {
	pids   map[string]int
	before map[string]procSample
	// peakReset says whether VmHWM was reset at the start, i.e. whether
	// the peak is this run's rather than the process lifetime's.
	peakReset map[string]bool
}

func startCost(pids map[string]int) *costMeter {
	m := &costMeter{pids: pids, before: map[string]procSample{}, peakReset: map[string]bool{}}
	for comp, pid := range pids {
		m.peakReset[comp] = resetPeak(pid) == nil
		if s, err := readProc(pid); err == nil {
			m.before[comp] = s
		}
	}
	return m
}

// stop adds, per component, cpu_s.<c> (CPU seconds spent), rss_mib.<c>
// (resident now) and peak_rss_mib.<c> (peak over the run, or over the
// process's life if it could not be reset).
func (m *costMeter) stop(out metrics) {
	for comp, pid := range m.pids {
		before, ok := m.before[comp]
		if !ok {
			continue
		}
		after, err := readProc(pid)
		if err != nil {
			logf("warning: %v", err)
			continue
		}
		out["cpu_s."+comp] = after.CPUSeconds - before.CPUSeconds
		out["rss_mib."+comp] = float64(after.RSSKiB) / 1024
		out["peak_rss_mib."+comp] = float64(after.PeakKiB) / 1024
	}
}
