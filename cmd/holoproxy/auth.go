package main

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/holoproxy/holoproxy/internal/goproxy"
)

// credentialsCloseTimeout bounds the wait for GOAUTH commands killed at exit (each command
// is killed at once; its WaitDelay is a second).
const credentialsCloseTimeout = 5 * time.Second

// closeCredentials kills the GOAUTH commands of creds still running, and what they
// started, before the program exits; logf reports a wait that ran out.
func closeCredentials(creds *goproxy.Credentials, logf func(format string, args ...any)) {
	closeWithin(credentialsCloseTimeout, creds.Close, logf)
}

// upstreamCredentials returns the credentials the go command would send to the proxies of
// list (GOPROXY syntax): the user info of their URLs, and, for an https proxy whose URL has
// none, what its GOAUTH methods give (netrc, the go command's default, git DIR, commands).
// GOAUTH comes from the environment, else from `go env` (asked only when a proxy is one it
// applies to); a GOAUTH the go command would refuse is an error. logf reports where
// credentials come from and the methods that fail, never what the credentials are.
func upstreamCredentials(ctx context.Context, list string, logf func(format string, args ...any)) (*goproxy.Credentials, error) {
	creds := goproxy.ListCredentials(list)
	if !creds.UsesGOAUTH() {
		return creds, nil
	}
	goauth := os.Getenv("GOAUTH")
	if goauth == "" {
		if vals, err := goEnv(ctx, "GOAUTH"); err == nil && vals[0] != "" {
			goauth = vals[0]
		} else {
			goauth = "netrc" // the go command's default
		}
	}
	methods, err := goproxy.ParseGOAUTH(goauth)
	if err != nil {
		return nil, usagef("%v", err)
	}
	if len(methods) == 0 {
		logf("GOAUTH=off: upstreams get no credentials but those in their URLs")
		return creds, nil
	}
	cfg := goproxy.AuthConfig{Methods: methods, Logf: logf}
	netrcPath := ""
	for _, m := range methods {
		if m.Kind != "netrc" {
			continue
		}
		path, err := goproxy.NetrcPath()
		if err != nil {
			break // no home directory: no netrc file either
		}
		if cfg.Netrc, err = goproxy.ReadNetrc(path); err != nil {
			return nil, fmt.Errorf("reading the netrc file: %w", err)
		}
		netrcPath = path
	}
	if names := creds.UseGOAUTH(cfg); len(names) > 0 {
		logf("upstream credentials from the netrc file %s for %s", netrcPath, strings.Join(names, ", "))
	}
	for _, m := range methods {
		if m.Kind != "netrc" {
			logf("upstream credentials from GOAUTH %s for https upstreams (as the go command: after a 4xx answer too)", m)
		}
	}
	return creds, nil
}
