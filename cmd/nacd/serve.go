package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sort"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"

	"github.com/herts-council/nacd/internal/config"
	"github.com/herts-council/nacd/pki"
	"github.com/herts-council/nacd/radius"
	"github.com/herts-council/nacd/radius/eaptls"
)

// bootstrapRenewEvery is how often serve re-runs the CA's Bootstrap: the
// server certificate is renewed at 2/3 of its life and pki/ca.crl (read by
// `nacd policy explain`) is rewritten before it goes stale.
const bootstrapRenewEvery = time.Hour

// shutdownTimeout bounds the graceful stop of the metrics server.
const shutdownTimeout = 5 * time.Second

// readyInfo is what serve reports once it listens (tests use the bound
// addresses of ":0" listeners).
type readyInfo struct {
	RADIUSAuth string
	RADIUSAcct string
	Metrics    string
	RadSec     string // "" when RadSec is disabled
	PKI        string // "" when the PKI listener is not running
	Pprof      string // "" without --pprof
}

// cmdServe runs `nacd serve` until ctx is done (SIGINT/SIGTERM in main).
func cmdServe(ctx context.Context, args []string, stdout, stderr io.Writer, ready func(readyInfo)) int {
	fs := newFlagSet("serve", stderr)
	cfgPath := fs.String("config", "", "configuration file (default "+DefaultConfigPath+" if it exists, else the built-in configuration)")
	dataDir := fs.String("data-dir", "", "data directory (overrides data_dir; default "+config.DefaultDataDir+")")
	pprofAddr := fs.String("pprof", "", "serve Go's runtime profiles (net/http/pprof) on this loopback `address`, e.g. 127.0.0.1:6060 (off by default)")
	if code, ok := parseFlags(fs, args, stderr); !ok {
		return code
	}
	if *pprofAddr != "" {
		if err := checkLoopback(*pprofAddr); err != nil {
			printErr(stderr, "serve", err)
			return exitUsage
		}
	}
	if err := serve(ctx, *cfgPath, *dataDir, *pprofAddr, stdout, stderr, ready); err != nil {
		printErr(stderr, "serve", err)
		return exitFailure
	}
	return exitOK
}

func serve(ctx context.Context, cfgPath, dataDir, pprofAddr string, stdout, stderr io.Writer, ready func(readyInfo)) error {
	l, err := loadConfig(cfgPath, dataDir, createSecret)
	if err != nil {
		return err
	}
	cfg := l.cfg
	logger := newLogger(stderr, cfg.Log.Level)
	defer logger.Sync() //nolint:errcheck // stderr
	applyGCSettings(logger, cfg.Limits.MaxConversations)

	var boot *pki.BootstrapResult
	var localCA *pki.CA // nacd's own CA (smallstep), when the configuration uses it
	if cfg.NeedsBootstrap() {
		crlURL, ocspURL := config.PKIURLs(cfg.Listen.PKI)
		localCA, boot, err = pki.OpenLocal(ctx, pki.CAConfig{DataDir: cfg.DataDir, Logger: logger, CRLURL: crlURL, OCSPURL: ocspURL})
		if err != nil {
			return fmt.Errorf("nacd's CA in %s: %w", cfg.DataDir, err)
		}
		defer localCA.Close()
		if err := cfg.UseBootstrap(boot); err != nil {
			return err
		}
		printBootstrap(stdout, boot)
	}
	if l.builtin {
		printBuiltinSecret(stdout, l)
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		buildInfoCollector(),
	)
	if c := serverCertExpiry(cfg.TLS.Certificate); c != nil {
		reg.MustRegister(c)
	}

	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()

	store, err := pki.NewTrustStore(cfg.TrustAnchors, pki.WithLogger(logger), pki.WithRegisterer(reg))
	if err != nil {
		return fmt.Errorf("trust anchors: %w", err)
	}
	store.Start(runCtx)
	if localCA != nil {
		if err := localCA.RegisterMetrics(reg); err != nil {
			return err
		}
		go localCA.RenewBootstrap(runCtx, bootstrapRenewEvery)
	}

	accessSink, err := openAccessLog(cfg, logger, reg)
	if err != nil {
		return err
	}
	accessLog, accessCloser := accessSink.Logger(), accessSink
	defer accessCloser.Close()
	if localCA != nil {
		localCA.SetAccessLog(accessLog)
	}

	acct, err := openAccounting(runCtx, cfg, logger, reg)
	if err != nil {
		return err
	}
	defer acct.close()

	curves, err := eaptls.ParseCurvePreferences(cfg.TLS.CurvePreferences)
	if err != nil {
		return fmt.Errorf("tls.curve_preferences: %w", err)
	}
	var mailer *pki.Mailer
	if cfg.PKI.Mail != nil {
		if mailer, err = pki.NewMailer(*cfg.PKI.Mail); err != nil {
			return fmt.Errorf("pki.smtp: %w", err)
		}
	}

	radsecRev, err := startRadSecRevocation(runCtx, cfg, logger)
	if err != nil {
		return err
	}
	rs, err := radius.NewServer(radius.Config{
		Clients: radiusClientsWithRadSec(cfg.Clients),
		RadSec:  radsecConfig(cfg, radsecRev),
		EAPTLS: &eaptls.Config{
			Certificates:     []tls.Certificate{cfg.TLS.Certificate},
			MinVersion:       cfg.TLS.MinVersion,
			MaxVersion:       cfg.TLS.MaxVersion,
			FragmentSize:     cfg.TLS.FragmentSize,
			MaxMessageSize:   cfg.TLS.MaxMessageSize,
			CurvePreferences: curves,
		},
		Verifier:            store,
		Policy:              cfg.Policy,
		Sessions:            acct.table,
		MaxConversations:    cfg.Limits.MaxConversations,
		ConversationTimeout: cfg.Limits.ConversationTimeout,
		DuplicateWindow:     cfg.Limits.DuplicateWindow,
		Logger:              logger.Named("radius"),
		AccessLog:           accessLog,
		AuditGate:           accessSink.Gate,
		Registerer:          reg,
	})
	if err != nil {
		return err
	}

	conn, err := net.ListenPacket("udp", cfg.Listen.RADIUSAuth)
	if err != nil {
		rs.Close()
		return fmt.Errorf("listen.radius_auth: %w", err)
	}
	ln, err := net.Listen("tcp", cfg.Listen.Metrics)
	if err != nil {
		conn.Close()
		rs.Close()
		return fmt.Errorf("listen.metrics: %w", err)
	}
	errc := make(chan error, 4)
	radsecAddr, err := listenRadSec(cfg, rs, errc)
	if err != nil {
		ln.Close()
		conn.Close()
		rs.Close()
		return err
	}
	reloads, err := newReloader(cfgPath, dataDir, cfg, boot, rs, store, logger, reg)
	if err != nil {
		ln.Close()
		conn.Close()
		rs.Close()
		return err
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mux.Handle("POST /-/reload", reloads)
	acct.routes(mux)
	healthRoutes(mux, readyChecks(cfg, store, acct.table, accessSink))
	httpSrv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, ErrorLog: zap.NewStdLog(logger.Named("metrics"))}

	if err := acct.start(runCtx, cfg, rs, accessLog, reg, errc); err != nil {
		conn.Close()
		ln.Close()
		rs.Close()
		return err
	}
	reloads.afterReload = reconcileAfterReload(runCtx, acct.dyn, logger)
	var pprofBound string
	if pprofAddr != "" {
		if pprofBound, err = startPprof(runCtx, pprofAddr, logger); err != nil {
			conn.Close()
			ln.Close()
			rs.Close()
			return fmt.Errorf("--pprof: %w", err)
		}
	}
	var pkiAddr string
	var pkiStopped chan struct{}
	if localCA != nil && cfg.Listen.PKI != "" {
		// The admin API revokes through withSessionDisconnect: a revoked
		// device's live sessions are disconnected (RFC 5176).
		var pkiDone <-chan error
		pkiAddr, pkiDone, err = startPKIListener(runCtx, localCA, cfg.DataDir, pkiListenerConfig{
			Addr: cfg.Listen.PKI, Certificate: &cfg.TLS.Certificate, AdminSubjects: cfg.PKI.AdminSubjects,
			Authority: withSessionDisconnect(localCA, acct.dyn, logger.Named("revoke")),
			Mailer:    mailer, Logger: logger.Named("pki"), AccessLog: accessLog, Registerer: reg,
		})
		if err != nil {
			conn.Close()
			ln.Close()
			rs.Close()
			return fmt.Errorf("listen.pki: %w", err)
		}
		pkiStopped = make(chan struct{})
		go func() {
			defer close(pkiStopped)
			if err := <-pkiDone; err != nil && runCtx.Err() == nil {
				select {
				case errc <- fmt.Errorf("pki: %w", err):
				default:
				}
			}
		}()
	}
	go func() {
		if err := rs.Serve(conn); err != nil && !errors.Is(err, radius.ErrServerClosed) {
			errc <- fmt.Errorf("radius: %w", err)
		}
	}()
	go func() {
		if err := httpSrv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			errc <- fmt.Errorf("metrics: %w", err)
		}
	}()

	reloads.watchSignals(runCtx) // after acct.start: the hook reads acct.dyn
	info := readyInfo{RADIUSAuth: conn.LocalAddr().String(), RADIUSAcct: acct.conn.LocalAddr().String(), Metrics: ln.Addr().String(), RadSec: radsecAddr, PKI: pkiAddr, Pprof: pprofBound}
	logger.Info("ready",
		zap.String("radius_auth", info.RADIUSAuth),
		zap.String("radius_acct", info.RADIUSAcct),
		zap.String("sessions", cfg.Accounting.StoreName()),
		zap.String("metrics", "http://"+info.Metrics+"/metrics"),
		zap.String("radsec", info.RadSec),
		zap.String("pki", info.PKI),
		zap.String("config", cfg.Source),
		zap.String("data_dir", cfg.DataDir),
		zap.Int("clients", len(cfg.Clients)),
		zap.Strings("trust_anchors", anchorNames(cfg.TrustAnchors)),
		zap.String("access_log", cfg.Log.AccessLog),
		zap.String("version", version),
	)
	if ready != nil {
		ready(info)
	}

	var runErr error
	select {
	case <-ctx.Done():
		logger.Info("shutting down", zap.String("cause", context.Cause(ctx).Error()))
	case runErr = <-errc:
		logger.Error("stopping on error", zap.Error(runErr))
	}
	cancel()
	rs.Close()
	if pkiStopped != nil {
		select { // before the CA closes (deferred)
		case <-pkiStopped:
		case <-time.After(shutdownTimeout):
			logger.Warn("PKI listener did not stop in time")
		}
	}
	sctx, scancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer scancel()
	if err := httpSrv.Shutdown(sctx); err != nil {
		httpSrv.Close()
	}
	if err := accessCloser.Close(); err != nil {
		logger.Warn("close access log", zap.Error(err))
	}
	logger.Info("stopped")
	return runErr
}

func radiusClients(cs []config.Client) []radius.Client {
	out := make([]radius.Client, len(cs))
	for i, c := range cs {
		out[i] = radius.Client{
			Name:                        c.Name,
			Networks:                    c.Networks,
			Secret:                      []byte(c.Secret),
			Site:                        c.Site,
			RequireMessageAuthenticator: c.RequireMessageAuthenticator,
			CoAPort:                     c.CoAPort,
			DynAuth:                     radius.DynAuthMode(c.DynAuth),
		}
	}
	return out
}

func anchorNames(as []pki.AnchorConfig) []string {
	names := make([]string, len(as))
	for i, a := range as {
		names[i] = a.Name
	}
	return names
}

func printBootstrap(w io.Writer, b *pki.BootstrapResult) {
	state := "loaded"
	if b.Created {
		state = "created"
	}
	fmt.Fprintf(w, "nacd: bootstrap PKI %s (a throwaway local CA, for trying nacd out):\n", state)
	fmt.Fprintf(w, "  CA certificate      %s\n", b.CACert)
	fmt.Fprintf(w, "  CRL                 %s\n", b.CRL)
	fmt.Fprintf(w, "  server certificate  %s (key %s)\n", b.ServerCert, b.ServerKey)
	names := make([]string, 0, len(b.Demo))
	for n := range b.Demo {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  demo device         %s (key %s)\n", b.Demo[n].Cert, b.Demo[n].Key)
	}
}

func printBuiltinSecret(w io.Writer, l *loaded) {
	if l.secret != "" {
		// Printed once, when generated; afterwards only its path.
		fmt.Fprintf(w, "nacd: generated the RADIUS shared secret for the loopback client: %s\n", l.secret)
		fmt.Fprintf(w, "      (saved in %s, mode 0600; it is not printed again)\n", l.secretPath)
		return
	}
	fmt.Fprintf(w, "nacd: RADIUS shared secret for the loopback client: in %s\n", l.secretPath)
}

func buildInfoCollector() prometheus.Collector {
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "nacd_build_info",
		Help: "nacd build information; the value is always 1.",
	}, []string{"version", "goversion"})
	g.WithLabelValues(version, goVersion()).Set(1)
	return g
}
