package checksum

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
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
