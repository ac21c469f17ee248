package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"net/url"
	"path"
	"strings"
	"testing"
	"time"
)

// Bad values of the checksum and DNS flags of serve are usage errors (exit 2, one line),
// found before anything listens.
func TestServeChecksumAndDNSFlags(t *testing.T) {
	base := []string{"serve", "--listen=127.0.0.1:0", "--upstream=http://127.0.0.1:1", "--cache-dir=" + t.TempDir()}
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"bad dns", []string{"--dns=ftp://x"}, "--dns"},
		{"ttl floor above ceiling", []string{"--dns-min-ttl=2h"}, "--dns-min-ttl"},
		{"zero ttl", []string{"--dns-max-ttl=0s"}, "--dns-max-ttl"},
		{"missing ca file", []string{"--ca-file=/nonexistent/ca.pem"}, "--ca-file"},
		{"bad sumdb", []string{"--sumdb=sum.test+notakey"}, "--sumdb"},
		{"bad relay memory", []string{"--relay-memory=lots"}, "--relay-memory"},
		{"negative relay memory", []string{"--relay-memory=-1MiB"}, "--relay-memory"},
		{"tls certificate without key", []string{"--tls-cert=/nonexistent/tls.crt"}, "--tls-key"},
		{"bad log format", []string{"--log-format=xml"}, "--log-format"},
		{"debug listen without port", []string{"--debug-listen=127.0.0.1"}, "--debug-listen"},
	} {
		var out, errb bytes.Buffer
		code := execute(append(append([]string{}, base...), tc.args...), func(string) (string, bool) { return "", false }, &out, &errb)
		if code != exitUsage || !strings.Contains(errb.String(), tc.want) {
			t.Errorf("%s: exit %d, stderr %q; want %d naming %s", tc.name, code, errb.String(), exitUsage, tc.want)
		}
		if n := strings.Count(strings.TrimSpace(errb.String()), "\n"); n != 0 {
			t.Errorf("%s: usage error spans %d lines; want one", tc.name, n+1)
		}
	}
}

// --sumdb off needs nothing from the go command: with no go on PATH, serve gets as far as
// listening (on a port this test holds, so it stops there).
func TestServeSumDBOffWithoutGo(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	t.Setenv("PATH", t.TempDir())
	var out, errb bytes.Buffer
	code := execute([]string{"serve", "--listen=" + busy.Addr().String(), "--upstream=http://127.0.0.1:2", "--cache-dir=" + t.TempDir(), "--sumdb=off"},
		func(string) (string, bool) { return "", false }, &out, &errb)
	if code != exitFailure || !strings.Contains(errb.String(), "listen") {
		t.Errorf("exit %d, stderr %q; want it to fail only at listen", code, errb.String())
	}
}

// --relay-memory takes a size with or without a unit; 0 turns relaying off (a negative
// server.Config value), anything else is the size.
func TestByteSizeFlag(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
	}{
		{"0", -1},
		{"1048576", 1 << 20},
		{"64MiB", 64 << 20},
		{"1GB", 1e9},
		{"1.5 GiB", 3 << 29},
	} {
		var b byteSize
		if err := b.Set(tc.in); err != nil {
			t.Errorf("Set(%q): %v", tc.in, err)
			continue
		}
		if got := b.config(); got != tc.want {
			t.Errorf("Set(%q).config() = %d, want %d", tc.in, got, tc.want)
		}
	}
}

// A certificate that does not load stops serve before it listens, naming the files.
func TestServeTLSFilesMissing(t *testing.T) {
	dir := t.TempDir()
	var out, errb bytes.Buffer
	code := execute([]string{"serve", "--listen=127.0.0.1:0", "--upstream=http://127.0.0.1:1", "--cache-dir=" + dir,
		"--sumdb=off", "--tls-cert=" + dir + "/tls.crt", "--tls-key=" + dir + "/tls.key"},
		func(string) (string, bool) { return "", false }, &out, &errb)
	if code != exitFailure || !strings.Contains(errb.String(), "TLS certificate "+dir+"/tls.crt") {
		t.Errorf("exit %d, stderr %q; want %d naming the certificate file", code, errb.String(), exitFailure)
	}
	if strings.Contains(errb.String(), "msg=serving") {
		t.Errorf("serve listened before loading its certificate:\n%s", errb.String())
	}
}

// --log-format json writes every log line as one JSON object.
func TestServeLogFormatJSON(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	var out, errb bytes.Buffer
	code := execute([]string{"serve", "--listen=" + busy.Addr().String(), "--upstream=http://127.0.0.1:2", "--cache-dir=" + t.TempDir(),
		"--sumdb=off", "--log-format=json"}, func(string) (string, bool) { return "", false }, &out, &errb)
	if code != exitFailure {
		t.Fatalf("exit %d; want %d (the port is busy)", code, exitFailure)
	}
	var lines int
	for _, l := range strings.Split(strings.TrimSpace(errb.String()), "\n") {
		if strings.HasPrefix(l, "holoproxy: ") {
			continue // the command's own error line
		}
		var rec map[string]any
		if err := json.Unmarshal([]byte(l), &rec); err != nil || rec["msg"] == nil || rec["level"] == nil {
			t.Errorf("log line %q is not a JSON record with msg and level: %v", l, err)
		}
		lines++
	}
	if lines == 0 {
		t.Errorf("no log line before the failure:\n%s", errb.String())
	}
}

// In JSON, durations read as in text.
func TestNewLoggerJSONDurations(t *testing.T) {
	var b bytes.Buffer
	log, err := newLogger(&b, slog.LevelInfo, "json")
	if err != nil {
		t.Fatal(err)
	}
	log.Info("serving", "list_ttl", time.Minute, "duration", 937*time.Microsecond)
	var rec map[string]any
	if err := json.Unmarshal(b.Bytes(), &rec); err != nil {
		t.Fatalf("%q: %v", b.String(), err)
	}
	if rec["list_ttl"] != "1m0s" || rec["duration"] != "937µs" {
		t.Errorf("durations in JSON: %v, %v; want 1m0s, 937µs", rec["list_ttl"], rec["duration"])
	}
}

// A chain of "off" alone: refused when it comes from go env (a leftover GOPROXY=off more
// likely than a wish), accepted from --upstream (offline: the cache alone).
func TestServeOffline(t *testing.T) {
	t.Setenv("GOPROXY", "off")
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	run := func(args ...string) (int, string) {
		var out, errb bytes.Buffer
		code := execute(append([]string{"serve", "--listen=" + busy.Addr().String(), "--cache-dir=" + t.TempDir(), "--sumdb=off"}, args...),
			func(string) (string, bool) { return "", false }, &out, &errb)
		return code, errb.String()
	}
	if code, stderr := run(); code != exitFailure || !strings.Contains(stderr, "no proxy before") || !strings.Contains(stderr, "--upstream off") {
		t.Errorf("GOPROXY=off from go env: exit %d, %q; want a failure that names --upstream off", code, stderr)
	}
	// Explicit: it gets as far as listening (on a port this test holds), saying it is offline.
	if code, stderr := run("--upstream=off"); code != exitFailure || !strings.Contains(stderr, "offline") || !strings.Contains(stderr, "listen") {
		t.Errorf("--upstream off: exit %d, %q; want it to start offline and fail only at listen", code, stderr)
	}
}

// A --debug-listen address that is taken stops serve with the reason, after the main
// listener is up (and closed again).
func TestServeDebugListenBusy(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	var out, errb bytes.Buffer
	code := execute([]string{"serve", "--listen=127.0.0.1:0", "--debug-listen=" + busy.Addr().String(), "--upstream=http://127.0.0.1:2",
		"--cache-dir=" + t.TempDir(), "--sumdb=off", "--probe-interval=0"}, func(string) (string, bool) { return "", false }, &out, &errb)
	if code != exitFailure || !strings.Contains(errb.String(), "--debug-listen") || !strings.Contains(errb.String(), "address already in use") {
		t.Errorf("exit %d, stderr %q; want a failure naming --debug-listen", code, errb.String())
	}
}

// FuzzByteSize checks that a size flag (--cache-max-size, --relay-memory, trim's
// --max-size, and their environment twins) is read or refused with a one-line error, and
// that what is read is a size of at least 0 bytes, 0 meaning off.
func FuzzByteSize(f *testing.F) {
	for _, s := range []string{
		"0", "1048576", "64MiB", "1GB", "1.5 GiB", "50GiB", "", "-1", "1e9", "NaN", "Inf", "16EiB", "8EiB",
		"9223372036854775807", "9223372036854775808", "18446744073709551616", "1,000 kB", "١٢MiB", "1 x\ny",
		"1.5.5MB", "  7 mb  ",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		var b byteSize
		if err := b.Set(s); err != nil {
			if msg := err.Error(); strings.ContainsAny(msg, "\r\n") {
				t.Fatalf("Set(%q): error of more than one line: %q", s, msg)
			}
			return
		}
		if b < 0 {
			t.Fatalf("Set(%q) = %d bytes", s, int64(b))
		}
		if c := b.config(); (c == -1) != (b == 0) || (b != 0 && c != int64(b)) {
			t.Fatalf("Set(%q) = %d bytes, config %d", s, int64(b), c)
		}
		_ = b.String()
	})
}

// FuzzParseRoutes checks that a --route value is read or refused with a one-line usage
// error that never shows a password of its list, and that what is read has patterns that
// are all valid globs and a list, and reads back the same from PATTERNS=LIST.
func FuzzParseRoutes(f *testing.F) {
	for _, s := range []string{
		"corp.test/*=https://goproxy.corp.test", " corp.test/* , other.test = https://a.test|direct ", "=https://a.test",
		"corp.test/*=", "corp.test/*", "corp.test/[=https://a.test", "corp.test/*=https://u:s3cr3tpw@a.test",
		"corp.test/\\=https://u:s3cr3tpw@a.test", "a=b=c", "a,,b=off", "a=//u:s3cr3tpw@a.test",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		rs, err := parseRoutes([]string{v})
		if err != nil {
			var ue *usageError
			msg := err.Error()
			if !errors.As(err, &ue) || strings.ContainsAny(msg, "\r\n") {
				t.Fatalf("parseRoutes(%q): %q; want a one-line usage error", v, msg)
			}
			if _, list, ok := strings.Cut(v, "="); ok {
				for _, entry := range strings.FieldsFunc(list, func(r rune) bool { return r == ',' || r == '|' }) {
					u, err := url.Parse(strings.TrimSpace(entry))
					if err != nil || u.User == nil {
						continue
					}
					if pw, ok := u.User.Password(); ok && len(pw) >= 6 && strings.Count(v, pw) == 1 && strings.Contains(msg, pw) {
						t.Fatalf("parseRoutes(%q): %q shows the password", v, msg)
					}
				}
			}
			return
		}
		if len(rs) != 1 {
			t.Fatalf("parseRoutes(%q) = %d routes", v, len(rs))
		}
		r := rs[0]
		if r.patterns == "" || r.list == "" || r.patterns != strings.TrimSpace(r.patterns) || r.list != strings.TrimSpace(r.list) {
			t.Fatalf("parseRoutes(%q) = %+v", v, r)
		}
		for _, p := range strings.Split(r.patterns, ",") {
			if _, err := path.Match(p, ""); err != nil {
				t.Fatalf("parseRoutes(%q) accepted pattern %q: %v", v, p, err)
			}
		}
		if again, err := parseRoutes([]string{r.patterns + "=" + r.list}); err != nil || again[0] != r {
			t.Fatalf("parseRoutes(%q) = %+v, which reads back as %+v, %v", v, r, again, err)
		}
	})
}
