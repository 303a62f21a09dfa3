package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"net/netip"
	"time"

	"go.uber.org/zap"
)

// startPprof serves Go's runtime profiles (net/http/pprof) on addr, for
// `nacd serve --pprof`. The profiles reveal memory contents' shapes and let
// anyone who can connect burn CPU on a profile, so addr must be a loopback
// address (127.0.0.1:6060, [::1]:6060, localhost:6060): reach it from
// elsewhere through an SSH tunnel. It returns the bound address; the
// listener stops when ctx is done.
func startPprof(ctx context.Context, addr string, logger *zap.Logger) (string, error) {
	if err := checkLoopback(addr); err != nil {
		return "", err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, ErrorLog: zap.NewStdLog(logger.Named("pprof"))}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			logger.Warn("pprof listener stopped", zap.Error(err))
		}
	}()
	go func() {
		<-ctx.Done()
		srv.Close()
	}()
	logger.Warn("pprof profiling endpoint enabled (loopback only)", zap.String("url", "http://"+ln.Addr().String()+"/debug/pprof/"))
	return ln.Addr().String(), nil
}

// checkLoopback accepts host:port whose host is a loopback IP or
// "localhost".
func checkLoopback(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("--pprof %q: %w", addr, err)
	}
	if host == "localhost" {
		return nil
	}
	ip, err := netip.ParseAddr(host)
	if err != nil || !ip.Unmap().IsLoopback() {
		return fmt.Errorf("--pprof %q: only a loopback address is allowed (profiles must not be reachable from the network)", addr)
	}
	return nil
}
