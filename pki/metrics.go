package pki

import (
	"sync/atomic"
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

// caMetrics are the CA's collectors: counters for issuance and revocation,
// gauges computed at scrape time for expiry, the CRL and the revocation set.
type caMetrics struct {
	ca           *CA
	issued       *prometheus.CounterVec
	revoked      *prometheus.CounterVec
	expiry       *prometheus.Desc
	crlNumber    *prometheus.Desc
	revokedSet   *prometheus.Desc
	revSyncAge   *prometheus.Desc
	serverExpiry atomic.Int64 // Unix seconds of the server certificate issued by ServerCertificate/Bootstrap
}

func newCAMetrics(ca *CA) *caMetrics {
	return &caMetrics{
		ca: ca,
		issued: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "nacd_pki_certificates_issued_total",
			Help: "Device certificates issued or renewed by nacd's CA, by role and ownership.",
		}, []string{"role", "ownership"}),
		revoked: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "nacd_pki_certificates_revoked_total",
			Help: "Certificates revoked by nacd's CA on this node, by RFC 5280 reason.",
		}, []string{"reason"}),
		expiry: prometheus.NewDesc("nacd_pki_ca_expiry_timestamp_seconds",
			"NotAfter (Unix time) of nacd's root, intermediate and RADIUS server certificate.", []string{"ca"}, nil),
		crlNumber: prometheus.NewDesc("nacd_pki_crl_number",
			"Number of the current CRL published by nacd's CA.", nil, nil),
		revokedSet: prometheus.NewDesc("nacd_pki_revocation_set_entries",
			"Revoked serials in the in-memory revocation set the RADIUS path checks.", nil, nil),
		revSyncAge: prometheus.NewDesc("nacd_pki_revocation_sync_age_seconds",
			"Seconds since the revocation set last matched the store.", nil, nil),
	}
}

func (m *caMetrics) register(r prometheus.Registerer) error {
	for _, c := range []prometheus.Collector{m.issued, m.revoked, caCollector{m}} {
		if err := r.Register(c); err != nil {
			return err
		}
	}
	return nil
}

func (m *caMetrics) unregister(r prometheus.Registerer) {
	r.Unregister(m.issued)
	r.Unregister(m.revoked)
	r.Unregister(caCollector{m})
}

type caCollector struct{ m *caMetrics }

func (c caCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.m.expiry
	ch <- c.m.crlNumber
	ch <- c.m.revokedSet
	ch <- c.m.revSyncAge
}

func (c caCollector) Collect(ch chan<- prometheus.Metric) {
	ca := c.m.ca
	ch <- prometheus.MustNewConstMetric(c.m.expiry, prometheus.GaugeValue, float64(ca.root.NotAfter.Unix()), "root")
	ch <- prometheus.MustNewConstMetric(c.m.expiry, prometheus.GaugeValue, float64(ca.inter.NotAfter.Unix()), "intermediate")
	if s := c.m.serverExpiry.Load(); s != 0 {
		ch <- prometheus.MustNewConstMetric(c.m.expiry, prometheus.GaugeValue, float64(s), "server")
	}
	ch <- prometheus.MustNewConstMetric(c.m.crlNumber, prometheus.GaugeValue, float64(ca.CRLNumber()))
	ch <- prometheus.MustNewConstMetric(c.m.revokedSet, prometheus.GaugeValue, float64(ca.revs.Len()))
	ch <- prometheus.MustNewConstMetric(c.m.revSyncAge, prometheus.GaugeValue, time.Since(ca.revs.LastSync()).Seconds())
}
