package config

import (
	"strings"
	"testing"
	"time"
)

func TestAuditLogFields(t *testing.T) {
	tests := []struct {
		name    string
		log     string
		wantErr string
		check   func(t *testing.T, l Log)
	}{
		{name: "defaults", log: "", check: func(t *testing.T, l Log) {
			if l.OnWriteError != "fail_closed_il3" || l.AuditSealEvery != 1000 || l.AuditSealInterval != 5*time.Minute || l.AccessLogMaxSize != 0 || l.AccessLogMaxAge != 0 {
				t.Errorf("defaults = %+v", l)
			}
		}},
		{name: "all set", log: "  access_log: /var/log/nacd/access.log\n  access_log_max_size: 100MiB\n  access_log_max_age: 24h\n  on_write_error: keep_serving\n  audit_seal_every: 10\n  audit_seal_interval: 30s\n",
			check: func(t *testing.T, l Log) {
				if l.AccessLogMaxSize != 100<<20 || l.AccessLogMaxAge != 24*time.Hour || l.OnWriteError != "keep_serving" || l.AuditSealEvery != 10 || l.AuditSealInterval != 30*time.Second {
					t.Errorf("log = %+v", l)
				}
			}},
		{name: "plain bytes", log: "  access_log: /x/a.log\n  access_log_max_size: 65536\n", check: func(t *testing.T, l Log) {
			if l.AccessLogMaxSize != 65536 {
				t.Errorf("size = %d", l.AccessLogMaxSize)
			}
		}},
		{name: "stream", log: "  access_log: /x/a.log\n  access_log_stream: syslog\n", check: func(t *testing.T, l Log) {
			if l.AccessLogStream != "syslog" {
				t.Errorf("stream = %q", l.AccessLogStream)
			}
		}},
		{name: "stream same as the log", log: "  access_log: stdout\n  access_log_stream: stdout\n", wantErr: "log.access_log_stream"},
		{name: "bad stream", log: "  access_log_stream: kafka\n", wantErr: "log.access_log_stream"},
		{name: "bad policy", log: "  on_write_error: ignore\n", wantErr: "log.on_write_error"},
		{name: "bad size", log: "  access_log: /x/a.log\n  access_log_max_size: lots\n", wantErr: "log.access_log_max_size"},
		{name: "tiny size", log: "  access_log: /x/a.log\n  access_log_max_size: 10\n", wantErr: "log.access_log_max_size"},
		{name: "rotation of stdout", log: "  access_log: stdout\n  access_log_max_age: 1h\n", wantErr: "rotation needs"},
		{name: "seal interval too short", log: "  audit_seal_interval: 1ms\n", wantErr: "log.audit_seal_interval"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			doc := minimal
			if tc.log != "" {
				doc += "log:\n" + tc.log
			}
			cfg, err := Parse([]byte(doc), "test.yaml", "")
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one naming %s", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, cfg.Log)
		})
	}
}
