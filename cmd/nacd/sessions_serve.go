package main

// The serve side of accounting and dynamic authorization: the session
// table (embedded file or PostgreSQL), the accounting socket, the
// DynAuthClient, and the admin endpoints the `nacd sessions` CLI talks to
// (the embedded store is locked by the running daemon, so the CLI never
// opens it itself):
//
//	GET  /-/sessions?holder=E&device=U&serial=S&nas=N&session=ID   -> 200 JSON [session...]
//	POST /-/sessions/disconnect?session=ID|device=U|holder=E|serial=S[&nas=N] -> 200 JSON [result...]
//
// Both are on the metrics listener, answer only loopback peers, and need
// "Authorization: Bearer <token>" with the admin token of the data dir
// (data_dir/admin.token, 0600, shared with the PKI admin API).

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/herts-council/nacd/internal/config"
	"github.com/herts-council/nacd/pki"
	"github.com/herts-council/nacd/radius"
)

// Admin endpoint paths.
const (
	adminSessionsPath   = "/-/sessions"
	adminDisconnectPath = "/-/sessions/disconnect"
)

// revokeDisconnectTimeout bounds the Disconnect-Requests after one
// revocation (every NAS, with retries).
const revokeDisconnectTimeout = time.Minute

// accounting is what serve runs for accounting and dynamic authorization.
type accounting struct {
	table  *radius.SessionTable
	dyn    *radius.DynAuthClient
	conn   net.PacketConn
	token  string
	logger *zap.Logger
}

// openAccounting opens the session store and table and the admin token.
func openAccounting(ctx context.Context, cfg *config.Config, logger *zap.Logger, reg prometheus.Registerer) (*accounting, error) {
	st, err := radius.OpenSessionStore(ctx, cfg.Accounting.Store, cfg.DataDir)
	if err != nil {
		return nil, fmt.Errorf("accounting.store: %w", err)
	}
	table, err := radius.NewSessionTable(radius.SessionTableConfig{
		Store: st, IdleTimeout: cfg.Accounting.SessionIdleTimeout, Logger: logger.Named("sessions"), Registerer: reg,
	})
	if err != nil {
		st.Close()
		return nil, err
	}
	token, err := pki.EnsureAdminToken(filepath.Join(cfg.DataDir, pki.AdminTokenFileName))
	if err != nil {
		table.Close()
		return nil, fmt.Errorf("admin token: %w", err)
	}
	return &accounting{table: table, token: token, logger: logger}, nil
}

// start creates the DynAuthClient over rs's client table, binds the
// accounting socket, and runs it and the idle-session janitor until ctx
// ends; a serving error goes to errc.
func (a *accounting) start(ctx context.Context, cfg *config.Config, rs *radius.Server, accessLog *zap.Logger, reg prometheus.Registerer, errc chan<- error) error {
	dyn, err := radius.NewDynAuthClient(radius.DynAuthConfig{
		Sessions: a.table, Clients: rs, Timeout: cfg.DynAuth.Timeout, Attempts: cfg.DynAuth.Attempts,
		Logger: a.logger.Named("dynauth"), AuditLog: accessLog, Registerer: reg,
	})
	if err != nil {
		return err
	}
	a.dyn = dyn
	conn, err := net.ListenPacket("udp", cfg.Listen.RADIUSAcct)
	if err != nil {
		return fmt.Errorf("listen.radius_acct: %w", err)
	}
	a.conn = conn
	go a.table.Run(ctx)
	go func() {
		if err := rs.ServeAccounting(conn); err != nil && !errors.Is(err, radius.ErrServerClosed) {
			errc <- fmt.Errorf("radius accounting: %w", err)
		}
	}()
	return nil
}

// close closes the store (after the RADIUS server has stopped).
func (a *accounting) close() {
	if err := a.table.Close(); err != nil {
		a.logger.Warn("close session store", zap.Error(err))
	}
}

// routes adds the admin endpoints to mux.
func (a *accounting) routes(mux *http.ServeMux) {
	mux.Handle("GET "+adminSessionsPath, a.admin(a.handleList))
	mux.Handle("POST "+adminDisconnectPath, a.admin(a.handleDisconnect))
}

// admin lets through loopback peers with the admin bearer token.
func (a *accounting) admin(h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ap, err := netip.ParseAddrPort(r.RemoteAddr)
		if err != nil || !ap.Addr().Unmap().IsLoopback() {
			writeAdminError(w, http.StatusForbidden, "the admin API answers loopback only")
			return
		}
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || subtle.ConstantTimeCompare([]byte(strings.TrimSpace(got)), []byte(a.token)) != 1 {
			writeAdminError(w, http.StatusUnauthorized, "missing or wrong admin token (data_dir/"+pki.AdminTokenFileName+")")
			return
		}
		h(w, r)
	})
}

func filterOf(r *http.Request) radius.SessionFilter {
	q := r.URL.Query()
	return radius.SessionFilter{ID: q.Get("session"), Holder: q.Get("holder"), Device: q.Get("device"), Serial: q.Get("serial"), NAS: q.Get("nas")}
}

func (a *accounting) handleList(w http.ResponseWriter, r *http.Request) {
	ss, err := a.table.List(r.Context(), filterOf(r))
	if err != nil {
		a.logger.Error("admin: list sessions", zap.Error(err))
		writeAdminError(w, http.StatusInternalServerError, "cannot read the session table")
		return
	}
	if ss == nil {
		ss = []*radius.Session{}
	}
	writeAdminJSON(w, http.StatusOK, ss)
}

func (a *accounting) handleDisconnect(w http.ResponseWriter, r *http.Request) {
	f := filterOf(r)
	if f.ID == "" && f.Holder == "" && f.Device == "" && f.Serial == "" {
		writeAdminError(w, http.StatusBadRequest, "give session, device, holder or serial")
		return
	}
	res, err := a.dyn.DisconnectMatching(r.Context(), f, "service-desk")
	if err != nil {
		a.logger.Error("admin: disconnect", zap.Error(err))
		writeAdminError(w, http.StatusInternalServerError, "cannot read the session table")
		return
	}
	if res == nil {
		res = []radius.DynAuthResult{}
	}
	writeAdminJSON(w, http.StatusOK, res)
}

func writeAdminJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v) //nolint:errcheck // the client went away
}

func writeAdminError(w http.ResponseWriter, code int, msg string) {
	writeAdminJSON(w, code, map[string]string{"error": msg})
}

// sessionDisconnect wraps a pki.Authority so that every successful
// revocation (by serial, device or holder) disconnects the live sessions
// of what was revoked (RFC 5176), in the background: the revocation
// answers at once, the Disconnect-Requests follow within their timeouts.
// Serve wraps the CA with it wherever it hands the CA to a revocation path
// (the PKI admin API).
type sessionDisconnect struct {
	pki.Authority
	dyn    *radius.DynAuthClient
	logger *zap.Logger
	// done, when set, receives the results of each revocation's
	// disconnects (tests).
	done func([]radius.DynAuthResult)
}

func withSessionDisconnect(a pki.Authority, dyn *radius.DynAuthClient, logger *zap.Logger) *sessionDisconnect {
	return &sessionDisconnect{Authority: a, dyn: dyn, logger: logger}
}

func (s *sessionDisconnect) Revoke(ctx context.Context, serial string, reason pki.RevocationReason, by string) error {
	err := s.Authority.Revoke(ctx, serial, reason, by)
	if err == nil {
		s.disconnect([]string{serial}, nil, nil)
	}
	return err
}

func (s *sessionDisconnect) RevokeDevice(ctx context.Context, device string, reason pki.RevocationReason, by string) ([]string, error) {
	serials, err := s.Authority.RevokeDevice(ctx, device, reason, by)
	if err == nil {
		s.disconnect(serials, []string{device}, nil)
	}
	return serials, err
}

func (s *sessionDisconnect) RevokeHolder(ctx context.Context, email string, reason pki.RevocationReason, by string) ([]string, error) {
	serials, err := s.Authority.RevokeHolder(ctx, email, reason, by)
	if err == nil {
		s.disconnect(serials, nil, []string{email})
	}
	return serials, err
}

func (s *sessionDisconnect) disconnect(serials, devices, holders []string) {
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), revokeDisconnectTimeout)
		defer cancel()
		res, err := s.dyn.OnRevoke(ctx, serials, devices, holders)
		if err != nil {
			s.logger.Error("disconnect the sessions of a revocation", zap.Error(err))
		}
		if s.done != nil {
			s.done(res)
		}
	}()
}

// reconcileTimeout bounds the CoA/Disconnect-Requests after one reload.
const reconcileTimeout = time.Minute

// reconcileAfterReload is the reloader's afterReload hook: it re-decides
// every live session under the reloaded policy (DynAuthClient.Reconcile)
// in the background, bounded by reconcileTimeout, so that a session whose
// segment changed is moved (CoA) or disconnected per its NAS's dynauth.
// A reload that arrives meanwhile waits for the previous reconcile.
// done, when not nil, receives each reconcile's results (tests).
func reconcileAfterReload(ctx context.Context, dyn *radius.DynAuthClient, logger *zap.Logger) func(*config.Config) {
	return reconcileAfterReloadNotify(ctx, dyn, logger, nil)
}

func reconcileAfterReloadNotify(ctx context.Context, dyn *radius.DynAuthClient, logger *zap.Logger, done chan<- []radius.DynAuthResult) func(*config.Config) {
	logger = logger.Named("reconcile")
	var mu sync.Mutex
	return func(cfg *config.Config) {
		p := cfg.Policy
		go func() {
			mu.Lock()
			defer mu.Unlock()
			rctx, cancel := context.WithTimeout(ctx, reconcileTimeout)
			defer cancel()
			res, err := dyn.Reconcile(rctx, p, time.Now())
			if err != nil {
				logger.Error("re-decide live sessions after reload", zap.Error(err))
			}
			var acked, failed int
			for _, r := range res {
				if r.Result == radius.DynAuthACK {
					acked++
				} else {
					failed++
				}
			}
			logger.Info("live sessions re-decided after reload", zap.Int("moved", len(res)), zap.Int("acknowledged", acked), zap.Int("not_acknowledged", failed))
			if done != nil {
				done <- res
			}
		}()
	}
}
