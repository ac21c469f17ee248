package main

import (
	"fmt"
	"log/slog"
	"net/http"
	"strings"

	"github.com/holoproxy/holoproxy/internal/goproxy"
	"github.com/holoproxy/holoproxy/internal/server"
)

// route is one --route PATTERNS=LIST: the modules matching PATTERNS go to LIST alone.
type route struct{ patterns, list string }

// parseRoutes reads the --route values.
func parseRoutes(values []string) ([]route, error) {
	var rs []route
	for _, v := range values {
		patterns, list, ok := strings.Cut(v, "=")
		patterns, list = strings.TrimSpace(patterns), strings.TrimSpace(list)
		if !ok || patterns == "" || list == "" {
			return nil, usagef("--route %q: want PATTERNS=LIST, e.g. 'corp.example/*=https://goproxy.corp.example'", goproxy.Redact(v))
		}
		if err := checkPatterns("--route", patterns); err != nil {
			return nil, err
		}
		rs = append(rs, route{patterns, list})
	}
	return rs, nil
}

// routeLists returns the GOPROXY lists of rs.
func routeLists(rs []route) []string {
	var ls []string
	for _, r := range rs {
		ls = append(ls, r.list)
	}
	return ls
}

// serverRoutes parses the chains of rs over hc (their direct entries fetching through
// direct, when not nil), refusing a chain with nothing to fetch from (a route to nowhere
// is --gonoproxy) or one that points at this server.
func serverRoutes(rs []route, hc *http.Client, listen string, direct *goproxy.Direct, log *slog.Logger) ([]server.Route, error) {
	var out []server.Route
	for _, r := range rs {
		chain, err := goproxy.ParseChain(r.list, hc)
		if err != nil {
			return nil, usagef("--route %q: %v", r.patterns+"="+goproxy.Redact(r.list), err)
		}
		if direct != nil {
			chain.UseDirect(direct)
		}
		if len(chain.Entries) > 0 && chain.Entries[0].Direct && direct == nil {
			return nil, usagef("--route %q: the list starts with direct, which is off (--direct-jobs 0)", r.patterns+"="+goproxy.Redact(r.list))
		}
		if len(chain.Entries) == 0 || chain.Entries[0].Client == nil {
			return nil, usagef("--route %q: the list must start with a proxy URL or direct (to keep modules from every upstream, use --gonoproxy)", r.patterns+"="+goproxy.Redact(r.list))
		}
		for _, c := range chain.Clients() {
			c.Header.Set("User-Agent", userAgent())
		}
		if err := checkChain(chain, true, log); err != nil {
			return nil, err
		}
		if err := server.CheckNotSelf(listen, chain); err != nil {
			return nil, fmt.Errorf("--route %q: %w", r.patterns, err)
		}
		log.Info("modules matching a route are fetched from its chain alone", "patterns", r.patterns, "chain", chain.String())
		out = append(out, server.Route{Patterns: r.patterns, Chain: chain})
	}
	return out, nil
}
