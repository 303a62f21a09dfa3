package main

import (
	"math"
	"testing"
)

func TestPlanGC(t *testing.T) {
	env := func(kv map[string]string) func(string) string {
		return func(k string) string { return kv[k] }
	}
	for _, c := range []struct {
		name    string
		env     map[string]string
		maxConv int
		want    gcPlan
	}{
		{"defaults", nil, 65536, gcPlan{percent: 400, memoryLimit: 2*65536*32<<10 + 256<<20}},
		{"small table", nil, 1000, gcPlan{percent: 400, memoryLimit: 2*1000*32<<10 + 256<<20}},
		{"GOGC set: both left to Go", map[string]string{"GOGC": "100"}, 65536, gcPlan{percent: -1, memoryLimit: -1}},
		{"GOGC=off set", map[string]string{"GOGC": "off"}, 65536, gcPlan{percent: -1, memoryLimit: -1}},
		{"GOMEMLIMIT set", map[string]string{"GOMEMLIMIT": "1GiB"}, 65536, gcPlan{percent: 400, memoryLimit: -1}},
		{"huge table does not overflow", nil, math.MaxInt, gcPlan{percent: 400, memoryLimit: math.MaxInt64}},
	} {
		if got := planGC(env(c.env), c.maxConv); got != c.want {
			t.Errorf("%s: planGC = %+v, want %+v", c.name, got, c.want)
		}
	}
	if got := planGC(env(nil), 65536).memoryLimit; got != 4352<<20 {
		t.Errorf("default memory limit %d MiB, want 4352 MiB (4.25 GiB)", got>>20)
	}
}
