package main

import (
	"math"
	"sort"
	"strconv"
	"strings"
)

// replacementBucket prefixes the manager's claim-to-replacement histogram
// buckets in counters, by their upper bound: replacement_bucket_<le>.
const replacementBucket = "replacement_bucket_"

// bucket is a cumulative histogram bucket: count observations at most le.
type bucket struct {
	le, count float64
}

// buckets reads the cumulative buckets stored under prefix, sorted by bound.
func buckets(c counters, prefix string) []bucket {
	var out []bucket
	for k, v := range c {
		bound, ok := strings.CutPrefix(k, prefix)
		if !ok {
			continue
		}
		le, err := strconv.ParseFloat(bound, 64) // "+Inf" parses too
		if err != nil {
			continue
		}
		out = append(out, bucket{le: le, count: v})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].le < out[j].le })
	return out
}

// histogramQuantile estimates the q-quantile of cumulative buckets as
// Prometheus's histogram_quantile does: linearly within the bucket that
// holds it, from 0 for the first. A quantile in the +Inf bucket reads as
// the largest finite bound. false when there are no observations.
func histogramQuantile(q float64, bs []bucket) (float64, bool) {
	if len(bs) == 0 || bs[len(bs)-1].count <= 0 {
		return 0, false
	}
	rank := q * bs[len(bs)-1].count
	lowerBound, lowerCount := 0.0, 0.0
	for i, b := range bs {
		if b.count >= rank {
			if math.IsInf(b.le, 1) {
				if i == 0 {
					return 0, false
				}
				return bs[i-1].le, true
			}
			if b.count == lowerCount {
				return b.le, true
			}
			return lowerBound + (b.le-lowerBound)*(rank-lowerCount)/(b.count-lowerCount), true
		}
		lowerBound, lowerCount = b.le, b.count
	}
	return bs[len(bs)-1].le, true
}
