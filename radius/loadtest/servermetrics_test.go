package loadtest

import (
	"context"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

func TestQuantileInterpolation(t *testing.T) {
	// 100 observations: 50 in (0, 1ms], 40 in (1, 2ms], 9 in (2, 4ms], 1 above 4 ms.
	b := []bucket{{0.001, 50}, {0.002, 90}, {0.004, 99}, {math.Inf(1), 100}}
	for _, c := range []struct {
		q     float64
		want  float64
		above bool
	}{
		{0.50, 1.0, false},
		{0.25, 0.5, false},
		{0.70, 1.5, false}, // 20 of the 40 in (1, 2]
		{0.90, 2.0, false}, // exactly the bucket's top
		{0.99, 4.0, false}, // 9 of 9 in (2, 4]
		{0.995, 4.0, true}, // in +Inf: the last finite bound, flagged
		{1.0, 4.0, true},
	} {
		got, above := quantile(c.q, b, 100)
		if math.Abs(got-c.want) > 1e-9 || above != c.above {
			t.Errorf("quantile(%v) = %v, %v; want %v, %v", c.q, got, above, c.want, c.above)
		}
	}
	if got, above := quantile(0.99, nil, 0); got != 0 || above {
		t.Errorf("empty histogram: %v %v", got, above)
	}
}

func TestServerSideRejectsInconsistentScrapes(t *testing.T) {
	before := &serverSnapshot{count: 10, buckets: []bucket{{0.001, 10}, {math.Inf(1), 10}}}
	restarted := &serverSnapshot{count: 2, buckets: []bucket{{0.001, 2}, {math.Inf(1), 2}}}
	if _, err := serverSide("u", before, restarted, 1); err == nil || !strings.Contains(err.Error(), "restarted") {
		t.Errorf("counter went backwards: err %v", err)
	}
	rebucketed := &serverSnapshot{count: 20, buckets: []bucket{{0.002, 20}, {math.Inf(1), 20}}}
	if _, err := serverSide("u", before, rebucketed, 1); err == nil {
		t.Error("changed buckets accepted")
	}
	after := &serverSnapshot{count: 30, sum: 0.05, cpu: 3, hasCPU: true, buckets: []bucket{{0.001, 25}, {math.Inf(1), 30}}}
	before.cpu, before.hasCPU, before.sum = 1, true, 0.01
	d, err := serverSide("u", before, after, 4)
	if err != nil {
		t.Fatal(err)
	}
	if d.Requests != 20 || math.Abs(d.RequestMean-2) > 1e-9 || d.CPUSeconds != 2 || d.CPUPerAuth != 500 {
		t.Errorf("server side %+v: want 20 requests, mean 2 ms, 2 CPU s, 500 ms/auth", d)
	}
	// 15 of the 20 in (0, 1 ms], 5 above: p50 interpolated, p99 beyond.
	if math.Abs(d.RequestP50-10.0/15) > 1e-9 || !d.AboveLastBucket || d.RequestP99 != 1 {
		t.Errorf("quantiles %+v", d)
	}
}

// TestScrapeServer reads a real client_golang exposition: the histogram by
// type (only access_request counts) and the process CPU counter.
func TestScrapeServer(t *testing.T) {
	reg := prometheus.NewRegistry()
	h := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: metricRequestDuration, Help: "test", Buckets: []float64{0.0005, 0.001, 0.01},
	}, []string{"type"})
	reg.MustRegister(h, collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	for _, v := range []float64{0.0002, 0.0007, 0.0009, 0.02} {
		h.WithLabelValues(requestTypeAccess).Observe(v)
	}
	h.WithLabelValues("accounting_request").Observe(0.5)
	srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	defer srv.Close()

	s, err := scrapeServer(context.Background(), http.DefaultClient, srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	if s.count != 4 || math.Abs(s.sum-0.0218) > 1e-9 {
		t.Errorf("count %d sum %v; want 4 and 0.0218 (access_request only)", s.count, s.sum)
	}
	want := []bucket{{0.0005, 1}, {0.001, 3}, {0.01, 3}}
	if len(s.buckets) < len(want) {
		t.Fatalf("buckets %v", s.buckets)
	}
	for i, b := range want {
		if s.buckets[i] != b {
			t.Errorf("bucket %d = %v, want %v", i, s.buckets[i], b)
		}
	}
	if !s.hasCPU || s.cpu < 0 { // a fresh test process may have used less than one clock tick
		t.Errorf("process CPU not read: %v %v", s.hasCPU, s.cpu)
	}

	// Not nacd (no such histogram): a clear error, so Run refuses to start.
	empty := httptest.NewServer(promhttp.HandlerFor(prometheus.NewRegistry(), promhttp.HandlerOpts{}))
	defer empty.Close()
	if _, err := scrapeServer(context.Background(), http.DefaultClient, empty.URL); err == nil || !strings.Contains(err.Error(), metricRequestDuration) {
		t.Errorf("no histogram: err %v", err)
	}
	notFound := httptest.NewServer(http.NotFoundHandler())
	defer notFound.Close()
	if _, err := scrapeServer(context.Background(), http.DefaultClient, notFound.URL); err == nil {
		t.Error("404 accepted")
	}
}
