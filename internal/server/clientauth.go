package server

import (
	"bufio"
	"bytes"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strings"

	lru "github.com/hashicorp/golang-lru/v2"
	"golang.org/x/crypto/bcrypt"
)

// ClientAuth admits clients by HTTP basic authentication against a password file: one
// "user:bcrypt-hash" per line (htpasswd -B writes them), blank lines and #-comments
// allowed. The go command sends such credentials to a GOPROXY URL from its netrc file or
// the URL's user info, so a proxy holding private modules need not serve them to anyone
// who can reach its port. The file is read again when it changes (looked at once a second
// at most); a file that no longer parses keeps the last good users, logged once.
//
// A bcrypt comparison costs tens of milliseconds by design: each Authorization value's
// verdict is remembered (up to authCacheSize values, forgotten when the file changes), so
// a client pays it once, not on every request of a graph walk.
type ClientAuth struct {
	users *reloader[clientUsers]
}

// clientUsers is one version of the password file with the verdicts given under it.
type clientUsers struct {
	hashes map[string][]byte
	seen   *lru.Cache[string, bool] // Authorization value -> admitted
}

// authCacheSize bounds the remembered verdicts.
const authCacheSize = 4096

// NewClientAuth reads the password file; an unreadable or malformed file is an error.
func NewClientAuth(file string, log *slog.Logger) (*ClientAuth, error) {
	if log == nil {
		log = slog.Default()
	}
	parse := func() (clientUsers, error) {
		hashes, err := readPasswords(file)
		if err != nil {
			return clientUsers{}, err
		}
		seen, _ := lru.New[string, bool](authCacheSize)
		return clientUsers{hashes, seen}, nil
	}
	r, err := newReloader(parse,
		func(u clientUsers) { log.Info("client password file reloaded", "users", len(u.hashes)) },
		func(err error) {
			log.Warn("client password file changed but does not load: keeping the last good users", "err", err)
		}, file)
	if err != nil {
		return nil, err
	}
	return &ClientAuth{users: r}, nil
}

// readPasswords parses a password file.
func readPasswords(file string) (map[string][]byte, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("client password file: %w", err)
	}
	return parsePasswords(file, data)
}

// parsePasswords parses the content of the password file named file.
func parsePasswords(file string, data []byte) (map[string][]byte, error) {
	users := map[string][]byte{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	n := 1
	for ; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		user, hash, ok := strings.Cut(line, ":")
		if !ok || user == "" {
			return nil, fmt.Errorf("client password file %s:%d: want user:bcrypt-hash", file, n)
		}
		if _, err := bcrypt.Cost([]byte(hash)); err != nil {
			// bcrypt's message quotes a byte of the hash, which may be a control character.
			return nil, fmt.Errorf("client password file %s:%d: the hash of %q is not bcrypt (htpasswd -B): %s", file, n, user, oneLine(err.Error()))
		}
		users[user] = []byte(hash)
	}
	if err := sc.Err(); err != nil { // a line over 64 KiB: no user's line is that long
		return nil, fmt.Errorf("client password file %s:%d: %w", file, n, err)
	}
	if len(users) == 0 {
		return nil, fmt.Errorf("client password file %s: no user", file)
	}
	return users, nil
}

// Allow reports whether authorization, a request's Authorization header, names a user of
// the file with its password.
func (a *ClientAuth) Allow(authorization string) bool {
	u := a.users.get()
	seen, users := u.seen, u.hashes
	if ok, hit := seen.Get(authorization); hit {
		return ok
	}
	ok := false
	if user, pass, found := basicAuth(authorization); found {
		if hash, known := users[user]; known {
			ok = bcrypt.CompareHashAndPassword(hash, []byte(pass)) == nil
		}
	}
	seen.Add(authorization, ok)
	return ok
}

// Wrap returns h admitting only requests with credentials a allows (every path: Wrap
// serves listeners without probes, such as serve's --debug-listen).
func (a *ClientAuth) Wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !a.Allow(r.Header.Get("Authorization")) {
			writeUnauthorized(w)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// basicAuth returns the credentials of an Authorization header of the Basic scheme, read
// as net/http reads them: the scheme's name in any case (RFC 9110 section 11.1).
func basicAuth(authorization string) (user, pass string, ok bool) {
	r := http.Request{Header: http.Header{"Authorization": {authorization}}}
	return r.BasicAuth()
}

// open reports whether path is answered without credentials: the probes of a load
// balancer, which cannot send any.
func (a *ClientAuth) open(path string) bool { return path == "/healthz" || path == "/readyz" }

// unauthorized is the one-line answer to a request without valid credentials.
const unauthorizedBody = "holoproxy: this proxy wants HTTP basic credentials (the go command sends them from its netrc file or the GOPROXY URL)\n"
