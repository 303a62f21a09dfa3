package loadtest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"sort"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Names of nacd's metrics that ServerSide reads.
const (
	metricRequestDuration = "nacd_radius_request_duration_seconds"
	metricProcessCPU      = "process_cpu_seconds_total"
	requestTypeAccess     = "access_request"
)

// ServerSide is what the server's own Prometheus metrics say about a run:
// the time nacd spent on each Access-Request (from reading the datagram to
// sending the reply, queueing included) and the CPU its process used. Read
// from two scrapes of nacd's /metrics, before and after the run, so any
// other traffic to the server in between is counted too.
type ServerSide struct {
	URL string `json:"url"`
	// Requests is the number of Access-Requests answered during the run.
	Requests int64 `json:"requests"`
	// RequestP50/P90/P99 are quantiles of the time per Access-Request in
	// milliseconds, interpolated inside the histogram's buckets as
	// Prometheus' histogram_quantile does (so only as precise as nacd's
	// buckets, about 1.6x apart). A quantile beyond the largest finite
	// bucket is given as that bucket's bound (so it is a lower bound of
	// the real value) and AboveLastBucket is set.
	RequestP50      float64 `json:"request_p50_ms"`
	RequestP90      float64 `json:"request_p90_ms"`
	RequestP99      float64 `json:"request_p99_ms"`
	AboveLastBucket bool    `json:"above_last_bucket,omitempty"`
	// RequestMean is the mean time per Access-Request in milliseconds.
	RequestMean float64 `json:"request_mean_ms"`
	// CPUSeconds is the server process's CPU time during the run
	// (process_cpu_seconds_total; 0 when the server does not export it),
	// CPUPerAuth that divided by the authentications completed, in ms.
	CPUSeconds float64 `json:"cpu_seconds"`
	CPUPerAuth float64 `json:"cpu_per_auth_ms"`
}

// serverSnapshot is one scrape.
type serverSnapshot struct {
	count   uint64
	sum     float64
	buckets []bucket // cumulative, by upper bound
	cpu     float64
	hasCPU  bool
}

type bucket struct {
	upper float64
	count uint64
}

// scrapeServer reads url (a Prometheus text exposition) and extracts the
// Access-Request duration histogram and the process CPU counter.
func scrapeServer(ctx context.Context, client *http.Client, url string) (*serverSnapshot, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "text/plain")
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", url, err)
	}
	s := &serverSnapshot{}
	if f := families[metricProcessCPU]; f != nil && len(f.GetMetric()) > 0 {
		s.cpu, s.hasCPU = counterValue(f.GetMetric()[0]), true
	}
	f := families[metricRequestDuration]
	if f == nil || f.GetType() != dto.MetricType_HISTOGRAM {
		return nil, fmt.Errorf("%s: no histogram %s (is it nacd, and new enough?)", url, metricRequestDuration)
	}
	for _, m := range f.GetMetric() {
		if label(m, "type") != requestTypeAccess {
			continue
		}
		h := m.GetHistogram()
		s.count, s.sum = h.GetSampleCount(), h.GetSampleSum()
		for _, b := range h.GetBucket() {
			s.buckets = append(s.buckets, bucket{upper: b.GetUpperBound(), count: b.GetCumulativeCount()})
		}
	}
	sort.Slice(s.buckets, func(i, j int) bool { return s.buckets[i].upper < s.buckets[j].upper })
	return s, nil
}

func counterValue(m *dto.Metric) float64 {
	if c := m.GetCounter(); c != nil {
		return c.GetValue()
	}
	if u := m.GetUntyped(); u != nil {
		return u.GetValue()
	}
	return 0
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

// serverSide computes the run's figures from the scrapes before and after.
func serverSide(url string, before, after *serverSnapshot, completed int64) (*ServerSide, error) {
	if after.count < before.count {
		return nil, errors.New("the server's request histogram went backwards (was the server restarted during the run?)")
	}
	d := &ServerSide{URL: url, Requests: int64(after.count - before.count)}
	delta, err := bucketDelta(before.buckets, after.buckets)
	if err != nil {
		return nil, err
	}
	if d.Requests > 0 {
		d.RequestMean = (after.sum - before.sum) / float64(d.Requests) * 1000
		var above bool
		d.RequestP50, above = quantile(0.50, delta, uint64(d.Requests))
		d.AboveLastBucket = d.AboveLastBucket || above
		d.RequestP90, above = quantile(0.90, delta, uint64(d.Requests))
		d.AboveLastBucket = d.AboveLastBucket || above
		d.RequestP99, above = quantile(0.99, delta, uint64(d.Requests))
		d.AboveLastBucket = d.AboveLastBucket || above
	}
	if before.hasCPU && after.hasCPU {
		d.CPUSeconds = after.cpu - before.cpu
		if completed > 0 {
			d.CPUPerAuth = d.CPUSeconds / float64(completed) * 1000
		}
	}
	return d, nil
}

func bucketDelta(before, after []bucket) ([]bucket, error) {
	if len(before) != len(after) {
		return nil, errors.New("the server's histogram buckets changed during the run")
	}
	out := make([]bucket, len(after))
	for i := range after {
		if before[i].upper != after[i].upper || after[i].count < before[i].count {
			return nil, errors.New("the server's histogram buckets changed during the run")
		}
		out[i] = bucket{upper: after[i].upper, count: after[i].count - before[i].count}
	}
	return out, nil
}

// quantile interpolates the q-quantile in milliseconds linearly inside the
// bucket that holds it (the first bucket's lower bound is 0), as
// Prometheus' histogram_quantile does. above is true when it lies beyond
// the last finite bucket; the result is then that bucket's bound.
func quantile(q float64, buckets []bucket, total uint64) (ms float64, above bool) {
	if total == 0 || len(buckets) == 0 {
		return 0, false
	}
	rank := q * float64(total)
	lower, below := 0.0, uint64(0)
	for _, b := range buckets {
		if float64(b.count) >= rank {
			if math.IsInf(b.upper, 1) {
				return lower * 1000, true
			}
			in := b.count - below
			if in == 0 {
				return b.upper * 1000, false
			}
			return (lower + (b.upper-lower)*(rank-float64(below))/float64(in)) * 1000, false
		}
		lower, below = b.upper, b.count
	}
	return lower * 1000, true
}

// serverMetricsTimeout bounds each scrape.
const serverMetricsTimeout = 5 * time.Second
