package main

import (
	"context"
	"fmt"
	"os"
	"strings"

	"github.com/holoproxy/holoproxy/internal/goproxy"
)

// upstreamCredentials returns the credentials the go command would send to the proxies of
// list (GOPROXY syntax): the user info of their URLs, and, for a proxy whose URL has none,
// the netrc file's entry for its host when GOAUTH includes netrc (the go command's
// default). GOAUTH comes from the environment, else from `go env` (asked only when there
// is a netrc file to read). logf reports where credentials came from, never what they are.
func upstreamCredentials(ctx context.Context, list string, logf func(format string, args ...any)) (*goproxy.Credentials, error) {
	creds := goproxy.ListCredentials(list)
	path, err := goproxy.NetrcPath()
	if err != nil {
		return creds, nil // no home directory: no netrc file either
	}
	entries, err := goproxy.ReadNetrc(path)
	if err != nil {
		return nil, fmt.Errorf("reading the netrc file: %w", err)
	}
	if len(entries) == 0 {
		return creds, nil
	}
	goauth, ok := os.LookupEnv("GOAUTH")
	if !ok {
		if vals, err := goEnv(ctx, "GOAUTH"); err == nil {
			goauth = vals[0]
		} else {
			goauth = "netrc" // the go command's default
		}
	}
	useNetrc := false
	for _, part := range strings.Split(goauth, ";") {
		switch part = strings.TrimSpace(part); {
		case part == "off":
			logf("GOAUTH=off: the netrc file %s is not read", path)
			return creds, nil
		case part == "netrc":
			useNetrc = true
		case part != "":
			logf("GOAUTH entry %q is not supported (only netrc, and credentials in the upstream URL): ignored", strings.Fields(part)[0])
		}
	}
	if !useNetrc {
		return creds, nil
	}
	if names := creds.UseNetrc(entries); len(names) > 0 {
		logf("upstream credentials from the netrc file %s for %s", path, strings.Join(names, ", "))
	}
	return creds, nil
}
