package sizing

import (
	"strings"
	"testing"
	"time"
	_ "time/tzdata" // the tests name zones; keep them independent of the host
)

func mustSchedule(t *testing.T, days []string, start, end, zone string) Schedule {
	t.Helper()
	s, err := ParseSchedule("s", days, start, end, zone, 1)
	if err != nil {
		t.Fatalf("ParseSchedule: %v", err)
	}
	return s
}

func at(t *testing.T, zone, wall string) time.Time {
	t.Helper()
	loc, err := time.LoadLocation(zone)
	if err != nil {
		t.Fatalf("loading %s: %v", zone, err)
	}
	v, err := time.ParseInLocation("Mon 2006-01-02 15:04", wall, loc)
	if err != nil {
		t.Fatalf("parsing %q: %v", wall, err)
	}
	return v
}

func TestScheduleActive(t *testing.T) {
	weekdays := []string{"Mon", "Tue", "Wed", "Thu", "Fri"}
	for _, tc := range []struct {
		name       string
		days       []string
		start, end string
		zone       string
		when       time.Time
		want       bool
	}{
		{name: "weekday office hours, Wednesday noon", days: weekdays, start: "08:00", end: "18:00", zone: "UTC",
			when: at(t, "UTC", "Wed 2025-03-05 12:00"), want: true},
		{name: "the window opens at start", days: weekdays, start: "08:00", end: "18:00", zone: "UTC",
			when: at(t, "UTC", "Wed 2025-03-05 08:00"), want: true},
		{name: "and is closed at end", days: weekdays, start: "08:00", end: "18:00", zone: "UTC",
			when: at(t, "UTC", "Wed 2025-03-05 18:00"), want: false},
		{name: "not on Saturday", days: weekdays, start: "08:00", end: "18:00", zone: "UTC",
			when: at(t, "UTC", "Sat 2025-03-08 12:00"), want: false},
		{name: "no days means every day", start: "08:00", end: "18:00", zone: "UTC",
			when: at(t, "UTC", "Sun 2025-03-09 12:00"), want: true},
		{name: "read on the zone's wall clock: 08:30 in Berlin is 07:30 UTC", days: weekdays, start: "08:00", end: "18:00", zone: "Europe/Berlin",
			when: at(t, "UTC", "Wed 2025-03-05 07:30"), want: true},
		{name: "and the day is the zone's: Monday 01:00 in Tokyo is Sunday in UTC", days: []string{"Mon"}, start: "00:00", end: "06:00", zone: "Asia/Tokyo",
			when: at(t, "UTC", "Sun 2025-03-09 16:00"), want: true},
		{name: "summer time moves the window with the wall clock", days: weekdays, start: "08:00", end: "18:00", zone: "America/New_York",
			when: at(t, "UTC", "Wed 2025-07-09 12:30"), want: true}, // 08:30 EDT
		{name: "the same UTC instant in winter is before opening", days: weekdays, start: "08:00", end: "18:00", zone: "America/New_York",
			when: at(t, "UTC", "Wed 2025-01-08 12:30"), want: false}, // 07:30 EST
		{name: "across midnight: Friday night", days: []string{"Fri"}, start: "22:00", end: "06:00", zone: "UTC",
			when: at(t, "UTC", "Fri 2025-03-07 23:00"), want: true},
		{name: "across midnight: early Saturday belongs to Friday's window", days: []string{"Fri"}, start: "22:00", end: "06:00", zone: "UTC",
			when: at(t, "UTC", "Sat 2025-03-08 05:59"), want: true},
		{name: "across midnight: early Friday does not", days: []string{"Fri"}, start: "22:00", end: "06:00", zone: "UTC",
			when: at(t, "UTC", "Fri 2025-03-07 05:00"), want: false},
		{name: "across midnight: closed at end", days: []string{"Fri"}, start: "22:00", end: "06:00", zone: "UTC",
			when: at(t, "UTC", "Sat 2025-03-08 06:00"), want: false},
		{name: "start equal to end is 24 hours: weekend all day", days: []string{"Sat", "Sun"}, start: "00:00", end: "00:00", zone: "UTC",
			when: at(t, "UTC", "Sun 2025-03-09 23:59"), want: true},
		{name: "but not Monday", days: []string{"Sat", "Sun"}, start: "00:00", end: "00:00", zone: "UTC",
			when: at(t, "UTC", "Mon 2025-03-10 00:00"), want: false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := mustSchedule(t, tc.days, tc.start, tc.end, tc.zone)
			if got := s.Active(tc.when); got != tc.want {
				t.Errorf("Active(%v) = %v, want %v", tc.when, got, tc.want)
			}
		})
	}
}

func TestParseSchedule(t *testing.T) {
	for _, tc := range []struct {
		name             string
		days             []string
		start, end, zone string
		wantErr          string // a substring; empty for success
	}{
		{name: "valid", days: []string{"Mon"}, start: "09:00", end: "17:30", zone: "Europe/Berlin"},
		{name: "empty zone is UTC", start: "00:00", end: "23:59"},
		{name: "a day in full", days: []string{"Monday"}, start: "09:00", end: "17:00", wantErr: `unknown day "Monday"`},
		{name: "a lower-case day", days: []string{"mon"}, start: "09:00", end: "17:00", wantErr: `unknown day "mon"`},
		{name: "one-digit hour", start: "9:00", end: "17:00", wantErr: `start: time of day "9:00"`},
		{name: "24:00", start: "09:00", end: "24:00", wantErr: `end: time of day "24:00"`},
		{name: "seconds", start: "09:00:00", end: "17:00", wantErr: `start: time of day "09:00:00"`},
		{name: "an unknown zone", start: "09:00", end: "17:00", zone: "Mars/Olympus", wantErr: `loading time zone "Mars/Olympus"`},
		{name: "the host's zone", start: "09:00", end: "17:00", zone: "Local", wantErr: `time zone "Local" depends on the operator's host`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseSchedule("office", tc.days, tc.start, tc.end, tc.zone, 3)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Errorf("ParseSchedule: %v, want no error", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Errorf("ParseSchedule: %v, want an error containing %q", err, tc.wantErr)
			}
		})
	}
}

func TestParseClock(t *testing.T) {
	for in, want := range map[string]int{"00:00": 0, "09:05": 545, "23:59": 1439} {
		if got, err := ParseClock(in); err != nil || got != want {
			t.Errorf("ParseClock(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
}

func TestParseRatio(t *testing.T) {
	for _, ok := range []string{"0.99", "0.5", "1", "1.0", "1.000", "0.001", "0.10"} {
		if _, err := ParseRatio(ok); err != nil {
			t.Errorf("ParseRatio(%q): %v, want no error", ok, err)
		}
	}
	for _, bad := range []string{"", "0", "0.0", "0.000", "1.01", "2", "-0.5", ".99", "99%", "9.9e-1", "NaN", "Inf", " 0.99", "1."} {
		if v, err := ParseRatio(bad); err == nil {
			t.Errorf("ParseRatio(%q) = %v, want an error", bad, v)
		}
	}
	if v, err := ParseRatio("0.99"); err != nil || v != 0.99 {
		t.Errorf("ParseRatio(0.99) = %v, %v", v, err)
	}
}
