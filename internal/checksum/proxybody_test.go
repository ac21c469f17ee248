package checksum

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// TestSumDBProxyFailureOneLine: the 502 of a database that failed quotes the first line of
// its answer; whatever bytes that line holds (a lone CR, bytes that are not UTF-8, a
// character cut by the length bound), the body is one line of UTF-8.
func TestSumDBProxyFailureOneLine(t *testing.T) {
	for _, tc := range []struct{ name, body string }{
		{"carriage return", "database\rdown"},
		{"not UTF-8", "caf\xe9 down"},
		{"cut in a character", strings.Repeat("x", 199) + "é and more"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			db := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(http.StatusInternalServerError)
				w.Write([]byte(tc.body + "\nsecond line\n"))
			}))
			t.Cleanup(db.Close)
			p, err := NewSumDBProxy(ProxyConfig{DB: SumDB{Name: "sum.test"}, Store: newDirStore(t),
				BaseURL: FixedBaseURL(db.URL), Logger: quietLogger()})
			if err != nil {
				t.Fatal(err)
			}
			rec := httptest.NewRecorder()
			p.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/sumdb/sum.test/latest", nil))
			body := rec.Body.String()
			if rec.Code != http.StatusBadGateway {
				t.Fatalf("GET latest = %d %q; want 502", rec.Code, body)
			}
			if !utf8.ValidString(body) || strings.ContainsAny(strings.TrimSuffix(body, "\n"), "\r\n") || strings.Contains(body, "second line") {
				t.Errorf("502 body %q: want one line of UTF-8", body)
			}
		})
	}
}

// TestFetchErrorNamesNoUser: a database URL with user info that cannot be reached fails
// with an error (which the /sumdb/ proxy quotes to clients) naming neither the user nor
// the password; net/http masks only the password.
func TestFetchErrorNamesNoUser(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there: the connection is refused
	base := func(context.Context) (string, error) { return "http://alice:s3cret@" + addr, nil }
	_, _, err = fetch(context.Background(), &http.Client{}, base, "/lookup/m@v1.0.0", 5*time.Second, "")
	if err == nil {
		t.Fatal("fetch from a closed port succeeded")
	}
	if msg := err.Error(); strings.Contains(msg, "alice") || strings.Contains(msg, "s3cret") {
		t.Errorf("error %q names the URL's user info", msg)
	}
	t.Logf("error: %v", err)
}
