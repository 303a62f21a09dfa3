package loadtest

import (
	"math"
	"math/bits"
	"time"
)

// histogram is a log-linear latency histogram in the spirit of HDR
// histograms: values are microseconds; below 64 µs every value has its own
// bucket, above it every power of two is split into 64 buckets, so a
// reported quantile is within 1/64 (1.6 %) of the true value. It has a
// fixed size (a few KiB), needs no dependency and merges by addition.
type histogram struct {
	counts [histBuckets]uint64
	n      uint64
	sum    uint64 // µs
	max    uint64 // µs, exact
}

const (
	histSubBits = 6
	histSub     = 1 << histSubBits // 64
	histExps    = 40               // up to 2^46 µs, far beyond any bound
	histBuckets = histSub + histExps*histSub
)

func bucketOf(v uint64) int {
	if v < histSub {
		return int(v)
	}
	e := bits.Len64(v) - histSubBits - 1 // v>>e is in [64, 128)
	if e >= histExps {
		return histBuckets - 1
	}
	return histSub + e*histSub + int(v>>uint(e)) - histSub
}

// bucketValue is the largest value that falls into bucket i (so quantiles
// are never under-reported).
func bucketValue(i int) uint64 {
	if i < histSub {
		return uint64(i)
	}
	e := (i - histSub) / histSub
	sub := uint64((i-histSub)%histSub) + histSub
	return (sub+1)<<uint(e) - 1
}

func (h *histogram) record(d time.Duration) {
	us := uint64(0)
	if d > 0 {
		us = uint64(d / time.Microsecond)
	}
	h.counts[bucketOf(us)]++
	h.n++
	h.sum += us
	if us > h.max {
		h.max = us
	}
}

func (h *histogram) merge(o *histogram) {
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.n += o.n
	h.sum += o.sum
	h.max = max(h.max, o.max)
}

// quantile returns the value at quantile q in [0, 1] in microseconds.
func (h *histogram) quantile(q float64) uint64 {
	if h.n == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(h.n)))
	if rank < 1 {
		rank = 1
	}
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			return min(bucketValue(i), h.max)
		}
	}
	return h.max
}

// Latency is a latency distribution in milliseconds.
type Latency struct {
	Count uint64  `json:"count"`
	Mean  float64 `json:"mean_ms"`
	P50   float64 `json:"p50_ms"`
	P90   float64 `json:"p90_ms"`
	P99   float64 `json:"p99_ms"`
	Max   float64 `json:"max_ms"`
}

func (h *histogram) latency() Latency {
	ms := func(us uint64) float64 { return float64(us) / 1000 }
	l := Latency{Count: h.n, P50: ms(h.quantile(0.50)), P90: ms(h.quantile(0.90)), P99: ms(h.quantile(0.99)), Max: ms(h.max)}
	if h.n > 0 {
		l.Mean = float64(h.sum) / float64(h.n) / 1000
	}
	return l
}
