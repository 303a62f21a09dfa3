package pki

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the TrustStore's collectors. The CRL gauges are computed at
// scrape time from the current anchors, so an anchor removed by Reload
// disappears from them; the error counter keeps its history.
type metrics struct {
	ts            *TrustStore
	refreshErrors *prometheus.CounterVec
	age           *prometheus.Desc
	nextUpdate    *prometheus.Desc
	entries       *prometheus.Desc
}

func newMetrics(ts *TrustStore) *metrics {
	return &metrics{
		ts: ts,
		refreshErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "nacd_pki_crl_refresh_errors_total",
			Help: "CRL loads or refreshes that failed (fetch, parse, signature, rollback); the last good CRL is kept.",
		}, []string{"anchor"}),
		age: prometheus.NewDesc("nacd_pki_crl_age_seconds",
			"Age (now - thisUpdate) of the oldest CRL loaded for the trust anchor.", []string{"anchor"}, nil),
		nextUpdate: prometheus.NewDesc("nacd_pki_crl_next_update_timestamp_seconds",
			"Earliest nextUpdate of the CRLs loaded for the trust anchor (Unix time).", []string{"anchor"}, nil),
		entries: prometheus.NewDesc("nacd_pki_crl_revoked_entries",
			"Revoked serials in the CRLs loaded for the trust anchor.", []string{"anchor"}, nil),
	}
}

func (m *metrics) register(r prometheus.Registerer) error {
	if err := r.Register(m.refreshErrors); err != nil {
		return err
	}
	return r.Register(crlCollector{m})
}

func (m *metrics) refreshError(anchor string) { m.refreshErrors.WithLabelValues(anchor).Inc() }

type crlCollector struct{ m *metrics }

func (c crlCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.m.age
	ch <- c.m.nextUpdate
	ch <- c.m.entries
}

func (c crlCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.m.ts.state.Load()
	if st == nil {
		return
	}
	now := time.Now()
	for _, a := range st.anchors {
		idx := a.crls.Load()
		if idx == nil || len(idx.byKey) == 0 {
			continue
		}
		var (
			oldest, next time.Time
			n            int
		)
		for _, crl := range idx.byKey {
			if oldest.IsZero() || crl.thisUpdate.Before(oldest) {
				oldest = crl.thisUpdate
			}
			if !crl.nextUpdate.IsZero() && (next.IsZero() || crl.nextUpdate.Before(next)) {
				next = crl.nextUpdate
			}
			n += len(crl.revoked)
		}
		name := a.cfg.Name
		ch <- prometheus.MustNewConstMetric(c.m.age, prometheus.GaugeValue, now.Sub(oldest).Seconds(), name)
		if !next.IsZero() {
			ch <- prometheus.MustNewConstMetric(c.m.nextUpdate, prometheus.GaugeValue, float64(next.UnixNano())/1e9, name)
		}
		ch <- prometheus.MustNewConstMetric(c.m.entries, prometheus.GaugeValue, float64(n), name)
	}
}
