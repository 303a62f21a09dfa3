package radius

import (
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the server's collectors. Labels are bounded: client names come
// from config, causes/codes/results/reasons/segments from fixed sets, site
// from config.
type metrics struct {
	requests      *prometheus.CounterVec   // type, client
	dropped       *prometheus.CounterVec   // cause
	decisions     *prometheus.CounterVec   // result, segment, site, reason
	conversations prometheus.Gauge         // EAP conversations in the table
	evictions     *prometheus.CounterVec   // cause
	handshake     *prometheus.HistogramVec // tls_version
	responses     *prometheus.CounterVec   // code
	duration      *prometheus.HistogramVec // type

	// durationByType holds duration's observer for each requestType value,
	// resolved once (no label hashing per reply).
	durationByType map[string]prometheus.Observer
}

// requestTypes are the values of the type label of
// nacd_radius_requests_total and nacd_radius_request_duration_seconds
// (requestType).
var requestTypes = []string{"access_request", "status_server", "accounting_request", "other"}

// observeDuration records the server time of one answered request of type
// typ (a requestTypes value).
func (m *metrics) observeDuration(typ string, d time.Duration) {
	o, ok := m.durationByType[typ]
	if !ok {
		o = m.durationByType["other"]
	}
	o.Observe(max(d, 0).Seconds())
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "nacd_radius_requests_total",
			Help: "RADIUS requests received from known clients, by packet type and client.",
		}, []string{"type", "client"}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "nacd_radius_dropped_total",
			Help: "RADIUS requests silently discarded (or answered from the duplicate cache), by cause.",
		}, []string{"cause"}),
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "nacd_radius_decisions_total",
			Help: "Access decisions (accept or reject), by segment, site and reason.",
		}, []string{"result", "segment", "site", "reason"}),
		conversations: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "nacd_radius_eap_conversations",
			Help: "EAP conversations in progress (in the conversation table).",
		}),
		evictions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "nacd_radius_eap_evictions_total",
			Help: "EAP conversations evicted before completion, by cause (full, idle).",
		}, []string{"cause"}),
		handshake: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "nacd_radius_eaptls_handshake_seconds",
			Help:    "Duration of EAP-TLS conversations from Identity to Success or Failure, by TLS version.",
			Buckets: []float64{0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30},
		}, []string{"tls_version"}),
		responses: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "nacd_radius_responses_total",
			Help: "RADIUS responses sent (not counting duplicate-cache replays), by code.",
		}, []string{"code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "nacd_radius_request_duration_seconds",
			Help: "Time from reading a request datagram to sending its reply, including the wait in the worker queue, by packet type. Only requests that get a reply (not drops, not duplicate-cache replays).",
			// 100 us to 1 s in 24 steps of about 1.49x: a p99 between
			// 0.1 ms and 1 s is read to within one step.
			Buckets: prometheus.ExponentialBucketsRange(0.0001, 1, 24),
		}, []string{"type"}),
		durationByType: make(map[string]prometheus.Observer, len(requestTypes)),
	}
	for _, t := range requestTypes {
		m.durationByType[t] = m.duration.WithLabelValues(t)
	}
	for _, c := range dropCauses {
		m.dropped.WithLabelValues(c)
	}
	for _, c := range []string{EvictFull, EvictIdle} {
		m.evictions.WithLabelValues(c)
	}
	if reg == nil {
		return m, nil
	}
	var errs []error
	for _, c := range []prometheus.Collector{m.requests, m.dropped, m.decisions, m.conversations, m.evictions, m.handshake, m.responses, m.duration} {
		if err := reg.Register(c); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return m, nil
}
