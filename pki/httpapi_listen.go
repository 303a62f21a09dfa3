package pki

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"sync"
	"time"
)

// peekTimeout bounds how long a new connection may stay silent before its
// first byte says whether it speaks TLS.
const peekTimeout = 10 * time.Second

// ServeSplit serves one port for both: connections that open with a TLS
// handshake get the full API (Handler) over TLS with cert; plain-HTTP
// connections get only PublicHandler (/crl, /ocsp, /ca.crt), so the CRL
// Distribution Point and OCSP URL of issued certificates can be
// http://<pki listen>/crl and /ocsp on the same port (design: PKI HTTP on
// 127.0.0.1:9443). It returns when ctx ends (graceful shutdown, 5 s) or
// ln fails.
func (a *API) ServeSplit(ctx context.Context, ln net.Listener, cert tls.Certificate) error {
	tlsConf := a.TLSConfig(cert)
	tlsLn := newChanListener(ln.Addr())
	plainLn := newChanListener(ln.Addr())
	tlsSrv := NewServer(a.Handler(), tlsConf, a.log)
	plainSrv := NewServer(a.PublicHandler(), nil, a.log)

	errc := make(chan error, 3)
	go func() { errc <- tlsSrv.Serve(tlsLn) }()
	go func() { errc <- plainSrv.Serve(plainLn) }()
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		pending = map[net.Conn]struct{}{} // connections whose first byte is awaited
	)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				errc <- err
				return
			}
			mu.Lock()
			pending[c] = struct{}{}
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				a.route(c, tlsConf, tlsLn, plainLn)
				mu.Lock()
				delete(pending, c)
				mu.Unlock()
			}()
		}
	}()
	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	ln.Close()
	tlsLn.Close()
	plainLn.Close()
	mu.Lock()
	for c := range pending {
		c.Close()
	}
	mu.Unlock()
	wg.Wait()
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err = errors.Join(err, ignoreClosed(tlsSrv.Shutdown(sctx)), ignoreClosed(plainSrv.Shutdown(sctx)))
	if ctx.Err() != nil && isClosedErr(err) {
		return nil
	}
	return err
}

// route reads the first byte of c: 0x16 (TLS handshake record) goes to the
// TLS server, anything else to the plain one.
func (a *API) route(c net.Conn, tlsConf *tls.Config, tlsLn, plainLn *chanListener) {
	_ = c.SetReadDeadline(time.Now().Add(peekTimeout))
	var b [1]byte
	if _, err := c.Read(b[:]); err != nil {
		c.Close()
		return
	}
	_ = c.SetReadDeadline(time.Time{})
	pc := &peekedConn{Conn: c, first: b[:]}
	if b[0] == 0x16 {
		if !tlsLn.deliver(tls.Server(pc, tlsConf)) {
			c.Close()
		}
		return
	}
	if !plainLn.deliver(pc) {
		c.Close()
	}
}

func ignoreClosed(err error) error {
	if isClosedErr(err) {
		return nil
	}
	return err
}

func isClosedErr(err error) bool {
	return err == nil || errors.Is(err, net.ErrClosed)
}

// peekedConn replays the byte read to classify the connection.
type peekedConn struct {
	net.Conn
	first []byte
}

func (p *peekedConn) Read(b []byte) (int, error) {
	if len(p.first) > 0 && len(b) > 0 {
		n := copy(b, p.first)
		p.first = p.first[n:]
		return n, nil
	}
	return p.Conn.Read(b)
}

// chanListener is a net.Listener fed by route.
type chanListener struct {
	addr  net.Addr
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
}

func newChanListener(addr net.Addr) *chanListener {
	return &chanListener{addr: addr, conns: make(chan net.Conn), done: make(chan struct{})}
}

func (l *chanListener) deliver(c net.Conn) bool {
	select {
	case l.conns <- c:
		return true
	case <-l.done:
		return false
	}
}

func (l *chanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *chanListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *chanListener) Addr() net.Addr { return l.addr }
