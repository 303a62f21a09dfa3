package eapoltest

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/md5"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"time"
)

// RADIUS codes and attribute types used by StatusServer (RFC 2865, 5997, 3579).
const (
	codeAccessAccept         = 2
	codeStatusServer         = 12
	attrMessageAuthenticator = 80
)

// StatusServer sends one RFC 5997 Status-Server request (with
// Message-Authenticator) to addr and returns nil when a correctly
// authenticated Access-Accept comes back within the context's deadline (or
// 1 s without one). It is the readiness probe the interop tests use, for
// nacd and for FreeRADIUS alike.
func StatusServer(ctx context.Context, addr, secret string) error {
	conn, err := net.Dial("udp", addr)
	if err != nil {
		return fmt.Errorf("status-server %s: %w", addr, err)
	}
	defer conn.Close()
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(time.Second)
	}
	if err := conn.SetDeadline(deadline); err != nil {
		return fmt.Errorf("status-server %s: %w", addr, err)
	}

	req := make([]byte, 20+18)
	req[0] = codeStatusServer
	var id [1]byte
	if _, err := rand.Read(id[:]); err != nil {
		return fmt.Errorf("status-server: random: %w", err)
	}
	req[1] = id[0]
	req[2], req[3] = 0, byte(len(req))
	if _, err := rand.Read(req[4:20]); err != nil {
		return fmt.Errorf("status-server: random: %w", err)
	}
	req[20], req[21] = attrMessageAuthenticator, 18
	mac := hmac.New(md5.New, []byte(secret))
	mac.Write(req)
	copy(req[22:38], mac.Sum(nil))

	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if _, err := conn.Write(req); err != nil {
		return fmt.Errorf("status-server %s: send: %w", addr, err)
	}
	buf := make([]byte, 4096)
	for {
		n, err := conn.Read(buf)
		if err != nil {
			if ctx.Err() != nil {
				return fmt.Errorf("status-server %s: no answer: %w", addr, ctx.Err())
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return fmt.Errorf("status-server %s: no answer before the deadline: %w", addr, err)
			}
			return fmt.Errorf("status-server %s: receive: %w", addr, err)
		}
		resp := buf[:n]
		if n < 20 || resp[1] != req[1] {
			continue // not ours
		}
		if err := verifyResponse(resp, req[4:20], secret); err != nil {
			return fmt.Errorf("status-server %s: %w", addr, err)
		}
		if resp[0] != codeAccessAccept {
			return fmt.Errorf("status-server %s: got code %d, want Access-Accept", addr, resp[0])
		}
		return nil
	}
}

// verifyResponse checks the Response Authenticator (RFC 2865 section 3) and,
// when present, the Message-Authenticator (RFC 3579 section 3.2).
func verifyResponse(resp, reqAuth []byte, secret string) error {
	length := int(resp[2])<<8 | int(resp[3])
	if length < 20 || length > len(resp) {
		return errors.New("response length field is invalid")
	}
	resp = resp[:length]
	h := md5.New()
	h.Write(resp[:4])
	h.Write(reqAuth)
	h.Write(resp[20:])
	h.Write([]byte(secret))
	if !hmac.Equal(h.Sum(nil), resp[4:20]) {
		return errors.New("bad Response Authenticator (wrong shared secret?)")
	}
	for off := 20; off+2 <= len(resp); {
		t, l := resp[off], int(resp[off+1])
		if l < 2 || off+l > len(resp) {
			return errors.New("malformed attribute in response")
		}
		if t == attrMessageAuthenticator {
			if l != 18 {
				return errors.New("malformed Message-Authenticator in response")
			}
			c := bytes.Clone(resp)
			copy(c[4:20], reqAuth)
			clear(c[off+2 : off+18])
			mac := hmac.New(md5.New, []byte(secret))
			mac.Write(c)
			if !hmac.Equal(mac.Sum(nil), resp[off+2:off+18]) {
				return errors.New("bad Message-Authenticator in response")
			}
		}
		off += l
	}
	return nil
}

// WaitStatusServer polls StatusServer every 100 ms until it succeeds or ctx
// ends; it returns the last error on timeout.
func WaitStatusServer(ctx context.Context, addr, secret string) error {
	var last error
	for {
		pctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
		last = StatusServer(pctx, addr, secret)
		cancel()
		if last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("server %s not ready: %w (last: %v)", addr, ctx.Err(), last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}
