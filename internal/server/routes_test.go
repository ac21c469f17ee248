package server

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestRoutes(t *testing.T) {
	o := newOrigin(t)
	e := newEnv(t, o.URL(), nil)
	named := func(name string) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte(name)) })
	}
	rt := NewRoutes(e.s)
	rt.Handle("/", named("dashboard"))
	rt.Handle("/metrics", named("metrics"))
	rt.Handle("/sumdb/", named("sumdb"))
	srv := httptest.NewServer(rt)
	defer srv.Close()
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for _, tt := range []struct {
		path     string
		status   int
		body     string // prefix of the body
		upstream bool   // the request may reach the origin
	}{
		{"/", 200, "dashboard", false},
		{"/metrics", 200, "metrics", false},
		{"/sumdb/sum.test/supported", 200, "sumdb", false},
		{"/example.com/m/@v/list", 200, "v1.0.0", true},
		{"/metrics/x", 404, "", false}, // not a route: a module path the parser refuses
		{"/example.com/../etc/@v/list", 400, "bad request", false},
		{"/example.com//m/@v/list", 400, "bad request", false},
		{"/./example.com/m/@v/list", 400, "bad request", false},
	} {
		before := o.total()
		resp, err := client.Get(srv.URL + tt.path)
		if err != nil {
			t.Fatal(err)
		}
		body := make([]byte, 200)
		n, _ := resp.Body.Read(body)
		resp.Body.Close()
		if resp.StatusCode != tt.status || !strings.HasPrefix(string(body[:n]), tt.body) {
			t.Errorf("GET %s = %d %q; want %d %q…", tt.path, resp.StatusCode, body[:n], tt.status, tt.body)
		}
		if !tt.upstream && o.total() != before {
			t.Errorf("GET %s reached the origin", tt.path)
		}
	}
}
