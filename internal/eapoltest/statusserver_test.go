package eapoltest

import (
	"context"
	"crypto/hmac"
	"crypto/md5"
	"net"
	"strings"
	"testing"
	"time"
)

// fakeServer answers every request with code, signed with secret (Response
// Authenticator and Message-Authenticator), or stays silent when code is 0.
func fakeServer(t *testing.T, code byte, secret string, checkReq bool) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 4096)
		for {
			n, addr, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			req := buf[:n]
			if checkReq { // the request's Message-Authenticator must verify
				c := append([]byte(nil), req...)
				clear(c[22:38])
				m := hmac.New(md5.New, []byte(secret))
				m.Write(c)
				if !hmac.Equal(m.Sum(nil), req[22:38]) {
					continue
				}
			}
			if code == 0 {
				continue
			}
			resp := make([]byte, 38)
			resp[0], resp[1], resp[3] = code, req[1], 38
			copy(resp[4:20], req[4:20])
			resp[20], resp[21] = attrMessageAuthenticator, 18
			m := hmac.New(md5.New, []byte(secret))
			m.Write(resp)
			copy(resp[22:38], m.Sum(nil))
			h := md5.New()
			h.Write(resp)
			h.Write([]byte(secret))
			copy(resp[4:20], h.Sum(nil))
			pc.WriteTo(resp, addr)
		}
	}()
	return pc.LocalAddr().String()
}

func TestStatusServer(t *testing.T) {
	tests := []struct {
		name, serverSecret string
		code               byte
		wantErr            string
	}{
		{name: "accept", serverSecret: "s3cret", code: codeAccessAccept},
		{name: "wrong secret", serverSecret: "other", code: codeAccessAccept, wantErr: "Authenticator"},
		{name: "reject", serverSecret: "s3cret", code: 3, wantErr: "want Access-Accept"},
		{name: "silent", serverSecret: "s3cret", code: 0, wantErr: "no answer"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			addr := fakeServer(t, tc.code, tc.serverSecret, false)
			ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			defer cancel()
			err := StatusServer(ctx, addr, "s3cret")
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("StatusServer: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("StatusServer err = %v, want one containing %q", err, tc.wantErr)
			}
		})
	}
}

func TestStatusServerSignsRequest(t *testing.T) {
	addr := fakeServer(t, codeAccessAccept, "s3cret", true)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := WaitStatusServer(ctx, addr, "s3cret"); err != nil {
		t.Fatalf("WaitStatusServer: %v", err)
	}
}
