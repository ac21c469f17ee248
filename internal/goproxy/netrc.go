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
// (GOAUTH=netrc). Each line is split into white-space separated tokens taken two at a
// time, a key and its value: "machine" starts an entry, "login" and "password" fill it,
// and an entry counts once it has all three; "macdef" makes the following lines, up to an
// empty one, a macro body that is skipped; other keys are skipped with their value. A
// "default" left over at the end of a line (not taken as a value) ends the file. The go
// command's parser is internal to it (cmd/go/internal/auth), so it cannot be imported;
// the tests pin these rules down case by case, odd ones included.
func ParseNetrc(data string) []NetrcEntry {
	var out []NetrcEntry
	var cur NetrcEntry
	inMacro := false
	for _, line := range strings.Split(data, "\n") {
		if inMacro {
			inMacro = line != ""
			continue
		}
		f := strings.Fields(line)
		i := 0
		for ; i+1 < len(f); i += 2 {
			switch key, val := f[i], f[i+1]; key {
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
		if i < len(f) && f[i] == "default" {
			break
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
