package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"reflect"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/herts-council/nacd/internal/config"
	"github.com/herts-council/nacd/pki"
	"github.com/herts-council/nacd/radius"
)

// Reload results: the label values of nacd_config_reloads_total.
const (
	reloadSuccess = "success"
	reloadFailure = "failure"
)

// reloader re-reads the configuration (SIGHUP, POST /-/reload) and applies
// it all at once: NAS clients, sites and rules, trust anchors and their
// CRLs, RadSec's certificate and CA bundle. Everything is validated before
// anything changes; an invalid configuration is refused, logged, counted,
// and the running one stays. Settings that need a restart (listeners,
// limits, the EAP-TLS engine, logging) are detected and logged, not applied.
type reloader struct {
	cfgPath, dataDir string
	rs               *radius.Server
	store            *pki.TrustStore
	logger           *zap.Logger
	now              func() time.Time

	reloads     *prometheus.CounterVec
	lastSuccess prometheus.Gauge
	// afterReload, when set, runs after each successful reload with the
	// new configuration (e.g. moving live sessions to the new rules).
	afterReload func(*config.Config)

	mu      sync.Mutex // serialises reloads
	current *config.Config
	boot    *pki.BootstrapResult // nil until a configuration needed it
}

func newReloader(cfgPath, dataDir string, current *config.Config, boot *pki.BootstrapResult, rs *radius.Server, store *pki.TrustStore, logger *zap.Logger, reg prometheus.Registerer) (*reloader, error) {
	r := &reloader{
		cfgPath: cfgPath, dataDir: dataDir, current: current, boot: boot,
		rs: rs, store: store, logger: logger.Named("reload"), now: time.Now,
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "nacd_config_reloads_total",
			Help: "Configuration reloads (SIGHUP or POST /-/reload), by result (success, failure).",
		}, []string{"result"}),
		lastSuccess: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "nacd_config_last_reload_success_timestamp_seconds",
			Help: "Unix time of the last successful configuration load (start or reload).",
		}),
	}
	r.reloads.WithLabelValues(reloadSuccess)
	r.reloads.WithLabelValues(reloadFailure)
	r.lastSuccess.Set(float64(r.now().UnixNano()) / 1e9)
	for _, c := range []prometheus.Collector{r.reloads, r.lastSuccess} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register reload metrics: %w", err)
		}
	}
	return r, nil
}

// reload loads and applies the configuration file. On error nothing
// changed.
func (r *reloader) reload() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	restart, err := r.apply()
	if err != nil {
		r.reloads.WithLabelValues(reloadFailure).Inc()
		fields := []zap.Field{zap.String("config", r.source()), zap.Error(err)}
		var ce *config.Error
		if errors.As(err, &ce) {
			problems := make([]string, len(ce.Problems))
			for i, p := range ce.Problems {
				problems[i] = p.String()
			}
			fields = append(fields, zap.Strings("problems", problems))
		}
		r.logger.Error("config reload refused; the running configuration is unchanged", fields...)
		return err
	}
	r.reloads.WithLabelValues(reloadSuccess).Inc()
	r.lastSuccess.Set(float64(r.now().UnixNano()) / 1e9)
	if len(restart) > 0 {
		r.logger.Warn("config reload: restart needed for some changes; they are not applied", zap.Strings("fields", restart))
	}
	r.logger.Info("config reloaded", zap.String("config", r.current.Source),
		zap.Int("clients", len(r.current.Clients)), zap.Int("rules", len(r.current.Policy.Rules)),
		zap.Strings("trust_anchors", anchorNames(r.current.TrustAnchors)))
	if r.afterReload != nil {
		r.afterReload(r.current)
	}
	return nil
}

func (r *reloader) source() string {
	if r.cfgPath != "" {
		return r.cfgPath
	}
	return r.current.Source
}

// apply is reload's work: load, validate every part, then swap.
func (r *reloader) apply() (restart []string, err error) {
	l, err := loadConfig(r.cfgPath, r.dataDir, createSecret)
	if err != nil {
		return nil, err
	}
	cfg := l.cfg
	if cfg.NeedsBootstrap() {
		if r.boot == nil {
			return nil, errors.New("the new configuration leaves the server certificate, trust anchors or RadSec CA to the bootstrap PKI, which this nacd did not start with: restart nacd to use it")
		}
		if err := cfg.UseBootstrap(r.boot); err != nil {
			return nil, err
		}
	}
	if err := cfg.CheckRadSec(); err != nil {
		return nil, err
	}
	restart = restartNeeded(r.current, cfg)

	rl := radius.Reload{Clients: radiusClientsWithRadSec(cfg.Clients), Policy: cfg.Policy}
	if r.current.RadSec.Enabled && cfg.RadSec.Enabled {
		rl.RadSec = &radius.RadSecConfig{
			Certificates: []tls.Certificate{cfg.RadSecCertificate()},
			ClientCAs:    cfg.RadSec.ClientCAs,
			MinVersion:   cfg.RadSec.MinVersion,
		}
	}
	prepared, err := r.rs.Prepare(rl)
	if err != nil {
		return nil, err
	}
	// The trust store is the last step that can fail; the radius swap
	// after it cannot.
	if err := r.store.Reload(cfg.TrustAnchors); err != nil {
		return nil, fmt.Errorf("trust anchors: %w", err)
	}
	prepared.Commit()
	r.current = cfg
	return restart, nil
}

// restartNeeded names the settings that differ between the running and the
// new configuration but only take effect at start.
func restartNeeded(old, cfg *config.Config) []string {
	var out []string
	diff := func(name string, a, b any) {
		if !reflect.DeepEqual(a, b) {
			out = append(out, name)
		}
	}
	diff("listen.radius_auth", old.Listen.RADIUSAuth, cfg.Listen.RADIUSAuth)
	diff("listen.radius_acct", old.Listen.RADIUSAcct, cfg.Listen.RADIUSAcct)
	diff("listen.metrics", old.Listen.Metrics, cfg.Listen.Metrics)
	diff("listen.radsec", old.Listen.RadSec, cfg.Listen.RadSec)
	diff("listen.pki", old.Listen.PKI, cfg.Listen.PKI)
	diff("pki", old.PKI, cfg.PKI)
	diff("data_dir", old.DataDir, cfg.DataDir)
	diff("tls.certificate", old.TLS.CertFile, cfg.TLS.CertFile)
	diff("tls.key", old.TLS.KeyFile, cfg.TLS.KeyFile)
	diff("tls.min_version", old.TLS.MinVersion, cfg.TLS.MinVersion)
	diff("tls.max_version", old.TLS.MaxVersion, cfg.TLS.MaxVersion)
	diff("tls.fragment_size", old.TLS.FragmentSize, cfg.TLS.FragmentSize)
	diff("tls.max_message_size", old.TLS.MaxMessageSize, cfg.TLS.MaxMessageSize)
	diff("tls.curve_preferences", old.TLS.CurvePreferences, cfg.TLS.CurvePreferences)
	diff("limits", old.Limits, cfg.Limits)
	diff("log", old.Log, cfg.Log)
	diff("radsec.enabled", old.RadSec.Enabled, cfg.RadSec.Enabled)
	diff("radsec.idle_timeout", old.RadSec.IdleTimeout, cfg.RadSec.IdleTimeout)
	diff("radsec.max_connections", old.RadSec.MaxConnections, cfg.RadSec.MaxConnections)
	diff("radsec.max_connections_per_client", old.RadSec.MaxConnectionsPerClient, cfg.RadSec.MaxConnectionsPerClient)
	// The revocation check of NAS certificates is built at start: its CRLs,
	// and the CA files it checks against (a reload does change the CAs the
	// handshake accepts; until a restart, certificates of a new CA fail the
	// old check: closed).
	diff("radsec.crls", old.RadSec.CRLs, cfg.RadSec.CRLs)
	diff("radsec.require_crl", old.RadSec.RequireCRL, cfg.RadSec.RequireCRL)
	diff("radsec.ca_files (revocation check)", old.RadSec.Revocation.CAFiles, cfg.RadSec.Revocation.CAFiles)
	return out
}

// radiusClientsWithRadSec converts the configured clients, RadSec fields
// included.
func radiusClientsWithRadSec(cs []config.Client) []radius.Client {
	out := radiusClients(cs)
	for i, c := range cs {
		out[i].RadSec = c.RadSec
		out[i].RadSecIdentities = c.RadSecIdentities
	}
	return out
}

// watchSignals reloads on every SIGHUP until ctx is done.
func (r *reloader) watchSignals(ctx context.Context) {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGHUP)
	go func() {
		defer signal.Stop(ch)
		for {
			select {
			case <-ctx.Done():
				return
			case <-ch:
				r.logger.Info("SIGHUP: reloading the configuration")
				r.reload() //nolint:errcheck // logged and counted
			}
		}
	}()
}

// ServeHTTP answers POST /-/reload, from loopback clients only: 200 after
// a reload, 400 with the problems when the configuration was refused, 403
// to anyone else.
func (r *reloader) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	if !loopbackRequest(req) {
		http.Error(w, "reload is allowed from loopback only\n", http.StatusForbidden)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if err := r.reload(); err != nil {
		w.WriteHeader(http.StatusBadRequest)
		fmt.Fprintf(w, "reload refused; the running configuration is unchanged:\n%v\n", err)
		return
	}
	fmt.Fprintln(w, "reloaded")
}

func loopbackRequest(req *http.Request) bool {
	host, _, err := net.SplitHostPort(req.RemoteAddr)
	if err != nil {
		return false
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.Unmap().IsLoopback()
}
