package checksum

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// The metrics follow the Verifier and the SumDBProxy: outcomes, failures by upstream,
// private lookups refused, and the enabled gauge with the warning when verification is off.
func TestMetrics(t *testing.T) {
	f := newProxyFixture(t, "corp.test")
	v := newVerifier(t, f.db, t.TempDir(), "corp.test")
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg, v, f.p)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := v.VerifyMod(ctx, modA.Path, modA.Version, modA.GoMod()); err != nil {
		t.Fatal(err)
	}
	bad := v.VerifyMod(ctx, modC.Path, modC.Version, append(modC.GoMod(), "// changed\n"...))
	if !errors.Is(bad, ErrChecksumMismatch) {
		t.Fatalf("changed go.mod: %v; want a mismatch", bad)
	}
	if err := v.VerifyMod(ctx, modPriv.Path, modPriv.Version, modPriv.GoMod()); err != nil {
		t.Fatal(err)
	}
	m.ObserveFill("http://proxy-a.test", fmt.Errorf("refused: %w", bad))
	m.ObserveFill("http://proxy-a.test", errors.New("answered 500"))
	m.ObserveFill("http://proxy-b.test", nil)
	f.get(t, "/sumdb/"+f.db.Name+"/lookup/"+modA.Path+"@"+modA.Version)
	f.get(t, "/sumdb/"+f.db.Name+"/lookup/"+modA.Path+"@"+modA.Version)
	f.get(t, "/sumdb/"+f.db.Name+"/lookup/"+modPriv.Path+"@"+modPriv.Version)

	for _, c := range []struct {
		name, labels string
		want         float64
	}{
		{"holoproxy_checksum_failures_total", `upstream="http://proxy-a.test"`, 1},
		{"holoproxy_checksum_failures_total", `upstream="http://proxy-b.test"`, -1},
		{"holoproxy_checksum_verification_enabled", `database="` + f.db.Name + `"`, 1},
		{"holoproxy_checksum_verifications_total", `outcome="verified"`, 1},
		{"holoproxy_checksum_verifications_total", `outcome="mismatch"`, 1},
		{"holoproxy_checksum_verifications_total", `outcome="exempt"`, 1},
		{"holoproxy_checksum_verifications_total", `outcome="error"`, 0},
		{"holoproxy_sumdb_proxy_answers_total", `cache="miss"`, 1},
		{"holoproxy_sumdb_proxy_answers_total", `cache="hit"`, 1},
		{"holoproxy_sumdb_proxy_private_refused_total", ``, 1},
	} {
		if got := gathered(t, reg, c.name, c.labels); got != c.want {
			t.Errorf("%s{%s} = %v; want %v", c.name, c.labels, got, c.want)
		}
	}

	// Verification off for want of a key: the gauge says 0 and the warning is exposed.
	off, err := SumDBOrOff("nokey.test", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	vOff, err := NewVerifier(VerifierConfig{DB: off, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	regOff := prometheus.NewRegistry()
	if _, err := NewMetrics(regOff, vOff, nil); err != nil {
		t.Fatal(err)
	}
	if got := gathered(t, regOff, "holoproxy_checksum_verification_enabled", `database="nokey.test"`); got != 0 {
		t.Errorf("keyless database: enabled = %v; want 0", got)
	}
	if got := gathered(t, regOff, "holoproxy_checksum_verification_warning", fmt.Sprintf("reason=%q", off.Warning)); got != 1 {
		t.Errorf("keyless database: warning gauge = %v; want 1 with the reason %q", got, off.Warning)
	}
}

// gathered returns the value of the metric name whose labels, rendered as in the text
// format without braces, equal labels; -1 when there is none.
func gathered(t *testing.T, reg *prometheus.Registry, name, labels string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			var parts []string
			for _, l := range m.GetLabel() {
				parts = append(parts, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
			}
			if strings.Join(parts, ",") != labels {
				continue
			}
			switch {
			case m.Counter != nil:
				return m.Counter.GetValue()
			case m.Gauge != nil:
				return m.Gauge.GetValue()
			}
		}
	}
	return -1
}
