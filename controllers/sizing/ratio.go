package sizing

import (
	"fmt"
	"regexp"
	"strconv"
)

// ratioPattern is a decimal greater than 0 and at most 1, written out:
// "0.99", "1", "1.0". The CRD's rule for targetWarmRatio is the same.
var ratioPattern = regexp.MustCompile(`^(0[.][0-9]*[1-9][0-9]*|1([.]0+)?)$`)

// ParseRatio reads a target fraction written as a plain decimal in (0, 1].
// Exponents, signs, spaces, "Inf" and "NaN", which strconv would take, are
// refused, so what is stored is what is meant.
func ParseRatio(s string) (float64, error) {
	if !ratioPattern.MatchString(s) {
		return 0, fmt.Errorf("ratio %q is not a decimal greater than 0 and at most 1, e.g. 0.99", s)
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return 0, fmt.Errorf("parsing ratio %q: %w", s, err)
	}
	return v, nil
}
