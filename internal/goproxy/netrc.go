package goproxy

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
)

// NetrcEntry is one machine of a netrc file: the credentials the go command sends, as HTTP
// basic authentication, to a proxy on that host.
type NetrcEntry struct {
	Machine, Login, Password string
}

// ParseNetrc reads the machine entries of a netrc file the way the go command does
// (GOAUTH=netrc): tokens separated by white space; "machine", "login" and "password"
// each take the next token, and an entry counts once it has all three; a "macdef" body
// runs to the next empty line and is skipped; parsing stops at "default", which the go
// command does not use. Other tokens ("account") are skipped with their value.
// The go command's own parser is internal to it (cmd/go/internal/auth), so it cannot be
// imported; this one follows the same rules, which the tests pin down case by case.
func ParseNetrc(data string) []NetrcEntry {
	var out []NetrcEntry
	var cur NetrcEntry
	inMacro := false
	for _, line := range strings.Split(data, "\n") {
		if inMacro {
			if strings.TrimSpace(line) == "" {
				inMacro = false
			}
			continue
		}
		f := strings.Fields(line)
		for i := 0; i < len(f); i++ {
			tok := f[i]
			if tok == "default" {
				return out
			}
			if i+1 >= len(f) {
				break // a key without its value on this line
			}
			val := f[i+1]
			i++
			switch tok {
			case "machine":
				cur = NetrcEntry{Machine: val}
			case "login":
				cur.Login = val
			case "password":
				cur.Password = val
			case "macdef":
				inMacro = true
			}
			if cur.Machine != "" && cur.Login != "" && cur.Password != "" {
				out = append(out, cur)
				cur = NetrcEntry{}
			}
		}
	}
	return out
}

// NetrcPath returns the netrc file the go command reads: $NETRC, else .netrc in the home
// directory (_netrc on Windows).
func NetrcPath() (string, error) {
	if p := os.Getenv("NETRC"); p != "" {
		return p, nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", err
	}
	name := ".netrc"
	if runtime.GOOS == "windows" {
		name = "_netrc"
	}
	return filepath.Join(home, name), nil
}

// ReadNetrc reads and parses the netrc file at path; a missing file has no entries.
func ReadNetrc(path string) ([]NetrcEntry, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return ParseNetrc(string(data)), nil
}
