package main

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"time"
)

// goEnv asks the go command for the values of the Go variables names, in order: defaults
// that name an upstream or a database come from the user's own go configuration at run
// time, never from the code.
func goEnv(ctx context.Context, names ...string) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "go", append([]string{"env"}, names...)...).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) && len(ee.Stderr) > 0 {
			err = fmt.Errorf("%w: %s", err, strings.TrimSpace(string(ee.Stderr)))
		}
		return nil, fmt.Errorf("reading %s with `go env`: %w", strings.Join(names, ", "), err)
	}
	vals := strings.Split(strings.TrimSuffix(string(out), "\n"), "\n")
	if len(vals) != len(names) {
		return nil, fmt.Errorf("`go env %s` answered %d lines", strings.Join(names, " "), len(vals))
	}
	return vals, nil
}

// proxyList returns value, the GOPROXY list a command's --flag was given, or, when it is
// empty, the GOPROXY the go command would use (go env at run time).
func proxyList(ctx context.Context, value, flag string) (string, error) {
	if value != "" {
		return value, nil
	}
	vals, err := goEnv(ctx, "GOPROXY")
	if err != nil {
		return "", fmt.Errorf("%w; pass --%s (GOPROXY syntax) instead", err, flag)
	}
	if vals[0] == "" {
		return "", fmt.Errorf("`go env GOPROXY` is empty; pass --%s (GOPROXY syntax)", flag)
	}
	return vals[0], nil
}
