package sizing

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"sync"
	"time"
)

// Schedule raises the pool's floor during a daily window of wall-clock time.
type Schedule struct {
	Name string
	// Days are the days a window opens on; none means every day.
	Days []time.Weekday
	// Start and End are minutes after midnight. An End at or before Start
	// closes the window the next day, so Start == End is a 24-hour window.
	Start, End  int
	Location    *time.Location
	MinReplicas int32
}

// WeekdayNames are the day names ParseWeekday reads, Monday first.
var WeekdayNames = []string{"Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"}

var weekdays = map[string]time.Weekday{
	"Mon": time.Monday, "Tue": time.Tuesday, "Wed": time.Wednesday, "Thu": time.Thursday,
	"Fri": time.Friday, "Sat": time.Saturday, "Sun": time.Sunday,
}

// ParseWeekday reads a day by its first three letters, e.g. "Mon".
func ParseWeekday(name string) (time.Weekday, error) {
	if d, ok := weekdays[name]; ok {
		return d, nil
	}
	return 0, fmt.Errorf("unknown day %q: want one of %v", name, WeekdayNames)
}

// clockPattern is HH:MM; the CRD's rules for start and end are the same.
var clockPattern = regexp.MustCompile(`^([01][0-9]|2[0-3]):([0-5][0-9])$`)

// ParseClock reads a time of day written HH:MM on a 24-hour clock, from
// 00:00 to 23:59, as minutes after midnight.
func ParseClock(s string) (int, error) {
	m := clockPattern.FindStringSubmatch(s)
	if m == nil {
		return 0, fmt.Errorf("time of day %q is not HH:MM on a 24-hour clock, from 00:00 to 23:59", s)
	}
	hours, _ := strconv.Atoi(m[1])
	minutes, _ := strconv.Atoi(m[2])
	return hours*60 + minutes, nil
}

// zones caches loaded locations by name: loading reads and parses the
// zone's data, and the controller asks for the same few on every pass.
// Only valid names are kept, so it stays within the zone database's size.
var zones sync.Map

// LoadTimeZone reads an IANA time zone name, e.g. "Europe/Berlin"; empty
// means UTC. "Local" is refused: it would mean the manager host's zone.
func LoadTimeZone(name string) (*time.Location, error) {
	if name == "Local" {
		return nil, errors.New(`time zone "Local" depends on the operator's host; name an IANA zone, e.g. Europe/Berlin, or UTC`)
	}
	if loc, ok := zones.Load(name); ok {
		return loc.(*time.Location), nil
	}
	loc, err := time.LoadLocation(name)
	if err != nil {
		return nil, fmt.Errorf("loading time zone %q: %w", name, err)
	}
	zones.Store(name, loc)
	return loc, nil
}

// ParseSchedule builds a Schedule from its API fields.
func ParseSchedule(name string, days []string, start, end, timeZone string, minReplicas int32) (Schedule, error) {
	s := Schedule{Name: name, MinReplicas: minReplicas}
	for _, d := range days {
		day, err := ParseWeekday(d)
		if err != nil {
			return Schedule{}, fmt.Errorf("schedule %q: %w", name, err)
		}
		s.Days = append(s.Days, day)
	}
	var err error
	if s.Start, err = ParseClock(start); err != nil {
		return Schedule{}, fmt.Errorf("schedule %q start: %w", name, err)
	}
	if s.End, err = ParseClock(end); err != nil {
		return Schedule{}, fmt.Errorf("schedule %q end: %w", name, err)
	}
	if s.Location, err = LoadTimeZone(timeZone); err != nil {
		return Schedule{}, fmt.Errorf("schedule %q: %w", name, err)
	}
	return s, nil
}

// Active reports whether t falls in the schedule's window, read on the
// wall clock of its time zone. A window that crosses midnight belongs to
// the day it opens on: Fri 22:00–06:00 covers early Saturday, not early
// Friday.
func (s Schedule) Active(t time.Time) bool {
	local := t.In(s.location())
	minute := local.Hour()*60 + local.Minute()
	today := local.Weekday()
	if s.Start < s.End {
		return s.opensOn(today) && minute >= s.Start && minute < s.End
	}
	yesterday := (today + 6) % 7
	return (s.opensOn(today) && minute >= s.Start) || (s.opensOn(yesterday) && minute < s.End)
}

func (s Schedule) opensOn(day time.Weekday) bool {
	if len(s.Days) == 0 {
		return true
	}
	for _, d := range s.Days {
		if d == day {
			return true
		}
	}
	return false
}

func (s Schedule) location() *time.Location {
	if s.Location == nil {
		return time.UTC
	}
	return s.Location
}
