package audit

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/zap"
)

const queryRecords = 100000

// generated100k writes queryRecords decision records through the real
// sink (sealed, one file) and returns the path.
func generated100k(tb testing.TB) string {
	tb.Helper()
	path := filepath.Join(tb.TempDir(), "access.log")
	clock := time.Date(2026, 11, 26, 0, 0, 0, 0, time.UTC)
	s, err := OpenSink(Options{Path: path, SealKey: testKey(tb), SealInterval: -1,
		Now: func() time.Time { clock = clock.Add(100 * time.Millisecond); return clock }})
	if err != nil {
		tb.Fatal(err)
	}
	for i := 0; i < queryRecords; i++ {
		s.Logger().Info("access-accept", append(decisionFields(i), zap.Int("i", i))...)
	}
	if err := s.Close(); err != nil {
		tb.Fatal(err)
	}
	return path
}

// queryIndexes runs q over path and returns the "i" of each match (-1 for
// records without one, e.g. seals).
func queryIndexes(tb testing.TB, path string, q Query) []int {
	tb.Helper()
	f, err := os.Open(path)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	var got []int
	err = q.Run(f, func(line []byte, _ *Record) error {
		var m struct {
			I *int `json:"i"`
		}
		if err := json.Unmarshal(line, &m); err != nil || m.I == nil {
			got = append(got, -1)
			return nil
		}
		got = append(got, *m.I)
		return nil
	})
	if err != nil {
		tb.Fatal(err)
	}
	return got
}

func TestQuery100k(t *testing.T) {
	if testing.Short() {
		t.Skip("writes 100,000 records")
	}
	path := generated100k(t)
	if res, err := Verify([]string{path}, nil); err != nil || res.Records < queryRecords {
		t.Fatalf("the generated log does not verify: %+v %v", res, err)
	}
	// Oracle for time ranges: every record's time, read independently.
	times := map[int]time.Time{}
	for _, l := range bytes.Split(bytes.TrimSpace(mustRead(t, path)), []byte("\n")) {
		var m struct {
			I    *int   `json:"i"`
			Time string `json:"time"`
		}
		if err := json.Unmarshal(l, &m); err != nil {
			t.Fatal(err)
		}
		if m.I != nil {
			tm, err := time.Parse(TimeLayout, m.Time)
			if err != nil {
				t.Fatal(err)
			}
			times[*m.I] = tm
		}
	}
	since, until := times[40000], times[40100]
	tests := []struct {
		name string
		q    Query
		want func(i int) bool
	}{
		{name: "holder", q: Query{Holder: "user7@herts.example"}, want: func(i int) bool { return i%1000 == 7 }},
		{name: "device", q: Query{Device: "00000000-0000-4000-8000-000000000005"}, want: func(i int) bool { return i%2000 == 5 }},
		{name: "serial with colons and upper case", q: Query{Serial: "10:00:2A"}, want: func(i int) bool { return 0x100000+i%5000 == 0x10002a }},
		{name: "nas by name", q: Query{NAS: "ap-3"}, want: func(i int) bool { return i%50 == 3 }},
		{name: "nas by ip", q: Query{NAS: "10.0.3.1"}, want: func(i int) bool { return i%50 == 3 }},
		{name: "rejects", q: Query{Result: "reject"}, want: func(i int) bool { return i%10 == 9 }},
		{name: "holder's rejects", q: Query{Holder: "user9@herts.example", Result: "reject"}, want: func(i int) bool { return i%1000 == 9 }},
		{name: "holder's accepts", q: Query{Holder: "user9@herts.example", Result: "accept"}, want: func(i int) bool { return false }},
		{name: "time range", q: Query{Since: since, Until: until}, want: func(i int) bool { return !times[i].Before(since) && times[i].Before(until) }},
		{name: "time range and nas", q: Query{Since: since, Until: until, NAS: "ap-10"}, want: func(i int) bool {
			return i%50 == 10 && !times[i].Before(since) && times[i].Before(until)
		}},
		{name: "nobody", q: Query{Holder: "nobody@herts.example"}, want: func(i int) bool { return false }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := queryIndexes(t, path, tc.q)
			var want []int
			for i := 0; i < queryRecords; i++ {
				if tc.want(i) {
					want = append(want, i)
				}
			}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("%d records %.200v, want %d %.200v", len(got), got, len(want), want)
			}
		})
	}
}

func mustRead(tb testing.TB, path string) []byte {
	b, err := os.ReadFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// BenchmarkQuery reports the scan speed in records/s over the 100,000
// record log (a selective query: the common auditor question).
func BenchmarkQuery(b *testing.B) {
	path := generated100k(b)
	for _, bc := range []struct {
		name string
		q    Query
	}{
		{"holder", Query{Holder: "user7@herts.example"}},
		{"rejects", Query{Result: "reject"}},
		{"time range", Query{Since: time.Date(2026, 11, 26, 1, 0, 0, 0, time.UTC), Until: time.Date(2026, 11, 26, 2, 0, 0, 0, time.UTC)}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				f, err := os.Open(path)
				if err != nil {
					b.Fatal(err)
				}
				if err := bc.q.Run(f, func([]byte, *Record) error { return nil }); err != nil {
					b.Fatal(err)
				}
				f.Close()
			}
			b.ReportMetric(float64(queryRecords)*float64(b.N)/b.Elapsed().Seconds(), "records/s")
		})
	}
}
