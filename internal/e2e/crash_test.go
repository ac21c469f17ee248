package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/mod/module"
	"golang.org/x/mod/sumdb/dirhash"
	modzip "golang.org/x/mod/zip"

	"github.com/holoproxy/holoproxy/internal/lab/modtree"
)

// bigModules returns n modules under prefix whose zips each hold size incompressible bytes,
// so that a fill takes long enough to be interrupted.
func bigModules(prefix string, n, size int) []modtree.Module {
	rng := rand.New(rand.NewChaCha8([32]byte{1, 2, 3}))
	mods := make([]modtree.Module, n)
	for i := range mods {
		big := make([]byte, size)
		for j := 0; j < size; j += 8 {
			v := rng.Uint64()
			for k := 0; k < 8 && j+k < size; k++ {
				big[j+k] = byte(v >> (8 * k))
			}
		}
		m := modtree.Module{Path: fmt.Sprintf("%s%02d", prefix, i), Version: "v1.0.0"}
		m.Files = map[string]string{
			"big.bin": string(big),
			"p.go":    "package " + m.PackageName() + "\n",
		}
		mods[i] = m
	}
	return mods
}

// fileKeys returns the store keys (request paths) of the .info, .mod and .zip of m.
func fileKeys(t *testing.T, m modtree.Module) []string {
	t.Helper()
	p, err := module.EscapePath(m.Path)
	if err != nil {
		t.Fatal(err)
	}
	v, err := module.EscapeVersion(m.Version)
	if err != nil {
		t.Fatal(err)
	}
	base := p + "/@v/" + v
	return []string{base + ".info", base + ".mod", base + ".zip"}
}

// storeState is what verifyStore found in a cache directory.
type storeState struct {
	keys map[string]bool // verified entries
	tmp  []string        // files under the store's .tmp
}

// verifyStore checks every file of the cache directory against the origin (compareCache).
func verifyStore(t *testing.T, dir string, org *origin) storeState {
	t.Helper()
	return compareCache(t, dir, org.file)
}

// compareCache checks every file of the cache directory against want, the origin's file at
// the same path: a .zip must pass CheckZip and hash (dirhash) like the origin's; any other
// file must be byte-identical. A file the origin does not have (a temporary file outside
// .tmp, a torn name) is an error. Files under .tmp are returned, not judged; the checksum
// database's answers (sumdb/) and the verifier's state (.sumdb-state/) are left aside.
func compareCache(t *testing.T, dir string, want func(key string) ([]byte, error)) storeState {
	t.Helper()
	st := storeState{keys: map[string]bool{}}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		key := filepath.ToSlash(rel)
		switch {
		case key == "sumdb" || key == ".sumdb-state":
			return filepath.SkipDir
		case d.IsDir() || key == ".":
			return nil
		case strings.HasPrefix(key, ".tmp/"):
			st.tmp = append(st.tmp, key)
			return nil
		case !d.Type().IsRegular():
			t.Errorf("store: %s is not a regular file (%v)", key, d.Type())
			return nil
		}
		orig, err := want(key)
		if err != nil {
			t.Errorf("store: %s is not a file of the origin (a temporary file left outside .tmp?)", key)
			return nil
		}
		if strings.HasSuffix(key, ".zip") {
			if err := checkZip(key, p, orig); err != nil {
				t.Errorf("store: %v", err)
				return nil
			}
		} else {
			got, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			if !bytes.Equal(got, orig) {
				t.Errorf("store: %s differs from the origin's (%d bytes, origin %d)", key, len(got), len(orig))
				return nil
			}
		}
		st.keys[key] = true
		return nil
	})
	if err != nil {
		t.Fatalf("walking the store: %v", err)
	}
	return st
}

// checkZip checks the stored zip at file for key: valid for its module (CheckZip) and with
// the same dirhash as the origin's bytes.
func checkZip(key, file string, origin []byte) error {
	escPath, rest, ok := strings.Cut(key, "/@v/")
	if !ok {
		return fmt.Errorf("%s: not a version file", key)
	}
	path, err := module.UnescapePath(escPath)
	if err != nil {
		return fmt.Errorf("%s: %w", key, err)
	}
	version, err := module.UnescapeVersion(strings.TrimSuffix(rest, ".zip"))
	if err != nil {
		return fmt.Errorf("%s: %w", key, err)
	}
	if _, err := modzip.CheckZip(module.Version{Path: path, Version: version}, file); err != nil {
		return fmt.Errorf("%s: CheckZip: %w", key, err)
	}
	got, err := dirhash.HashZip(file, dirhash.Hash1)
	if err != nil {
		return fmt.Errorf("%s: hashing: %w", key, err)
	}
	want, err := modtree.HashZipBytes(origin)
	if err != nil {
		return fmt.Errorf("%s: hashing the origin's zip: %w", key, err)
	}
	if got != want {
		return fmt.Errorf("%s: hash %s, origin's %s", key, got, want)
	}
	return nil
}

// fetch GETs base/key and returns the body of a 200 answer.
func fetch(ctx context.Context, hc *http.Client, base, key string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+base+"/"+key, nil)
	if err != nil {
		return nil, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("%s: reading: %w", key, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: %s: %s", key, resp.Status, strings.TrimSpace(string(body)))
	}
	return body, nil
}

// TestCrashSafety kills holoproxy with SIGKILL at random moments while it fills its cache
// from a slow origin, restarts it on the same cache directory each time, and requires that
// everything stored verifies against the origin and that no temporary file survives outside
// the store's .tmp. At the end the restarted server must serve every file byte-identical to
// the origin and, after SIGTERM, have stored and verified all of them.
func TestCrashSafety(t *testing.T) {
	rounds := 5
	if os.Getenv("CI") == "true" {
		rounds = 20
	}
	const perRound = 4
	mods := bigModules("crash.test/m", rounds*perRound, 384<<10)
	org := newOrigin(t, mods)
	org.zipChunk, org.zipPause = 16<<10, 5*time.Millisecond // about 3 MiB/s per zip
	cacheDir := t.TempDir()
	args := []string{"--cache-dir=" + cacheDir, "--upstream=" + org.URL}
	seed := uint64(time.Now().UnixNano())
	rng := rand.New(rand.NewPCG(seed, 7))
	t.Logf("seed %d, %d rounds", seed, rounds)
	hc := &http.Client{Timeout: 2 * time.Minute}

	var killedMidZip int
	for round := 0; round < rounds; round++ {
		p := startHoloproxy(t, args, nil)
		st := verifyStore(t, cacheDir, org)
		if len(st.tmp) > 0 {
			t.Errorf("round %d: after restart the store's .tmp still holds %q", round, st.tmp)
		}
		if t.Failed() {
			t.FailNow()
		}
		// Ask for modules not stored yet (they must be filled), and one that is.
		var pick []modtree.Module
		var stored []modtree.Module
		for _, m := range mods {
			if st.keys[fileKeys(t, m)[2]] {
				stored = append(stored, m)
			} else if len(pick) < perRound {
				pick = append(pick, m)
			}
		}
		if len(stored) > 0 {
			pick = append(pick, stored[rng.IntN(len(stored))])
		}
		for len(org.zipStarted) > 0 {
			<-org.zipStarted
		}
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		for _, m := range pick {
			for _, k := range fileKeys(t, m) {
				wg.Go(func() { fetch(ctx, hc, p.addr, k) }) // errors expected: the server dies
			}
		}
		// Kill during the fills: once the origin has begun sending a zip, after a random
		// delay. A zip takes the origin at least 24 pauses of 5ms, so in even rounds the
		// delay (under 60ms) lands mid-transfer; in odd rounds (under 400ms) anywhere from
		// mid-transfer to after the commits.
		select {
		case <-org.zipStarted:
		case <-time.After(60 * time.Second):
			cancel()
			wg.Wait()
			t.Fatalf("round %d: the origin got no zip request within 60s\n%s", round, p.log.String())
		}
		maxDelay := 60
		if round%2 == 1 {
			maxDelay = 400
		}
		time.Sleep(time.Duration(rng.IntN(maxDelay)) * time.Millisecond)
		if org.zipsActive.Load() > 0 {
			killedMidZip++
		}
		p.kill(t)
		cancel()
		wg.Wait()
	}
	t.Logf("%d of %d kills hit a zip mid-transfer", killedMidZip, rounds)
	if killedMidZip == 0 {
		t.Errorf("no kill landed while the origin was sending a zip: the test did not test a torn fill")
	}

	// The last restart must serve everything right and store all of it.
	p := startHoloproxy(t, args, nil)
	if st := verifyStore(t, cacheDir, org); len(st.tmp) > 0 {
		t.Errorf("final restart: the store's .tmp still holds %q", st.tmp)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	for _, m := range mods {
		for _, k := range fileKeys(t, m) {
			wg.Go(func() {
				sem <- struct{}{}
				defer func() { <-sem }()
				got, err := fetch(ctx, hc, p.addr, k)
				if err != nil {
					t.Errorf("after the crashes: %v", err)
					return
				}
				if want, _ := org.file(k); !bytes.Equal(got, want) {
					t.Errorf("after the crashes: %s served %d bytes differing from the origin's %d", k, len(got), len(want))
				}
			})
		}
	}
	wg.Wait()
	p.cmd.Process.Signal(syscall.SIGTERM)
	if err := p.wait(t); err != nil {
		t.Errorf("holoproxy exited with %v after SIGTERM; want exit status 0", err)
	}
	st := verifyStore(t, cacheDir, org)
	if len(st.tmp) > 0 {
		t.Errorf("after SIGTERM the store's .tmp holds %q", st.tmp)
	}
	for _, m := range mods {
		for _, k := range fileKeys(t, m) {
			if !st.keys[k] {
				t.Errorf("after serving it and shutting down, %s is not stored", k)
			}
		}
	}
}

// TestGracefulShutdown sends SIGTERM while zips are being filled and streamed and requires
// that every answer in flight completes byte-identical to the origin, that the process
// exits 0, and that no temporary file is left. The server takes its upstream from
// `go env GOPROXY` and its cache directory from HOLOPROXY_CACHE_DIR, so this also covers
// those two paths of serve's configuration. It runs on both HTTP fronts (--http-server,
// here through its environment twin).
func TestGracefulShutdown(t *testing.T) {
	for _, front := range []string{"fasthttp", "net/http"} {
		t.Run(strings.ReplaceAll(front, "/", "-"), func(t *testing.T) { testGracefulShutdown(t, front) })
	}
}

func testGracefulShutdown(t *testing.T, front string) {
	const n = 4
	mods := bigModules("term.test/m", n, 1<<20)
	org := newOrigin(t, mods)
	org.zipChunk, org.zipPause = 64<<10, time.Millisecond
	hold := make(chan struct{})
	org.zipHold = hold
	cacheDir := t.TempDir()
	p := startHoloproxy(t, nil, []string{"HOLOPROXY_CACHE_DIR=" + cacheDir, "GOPROXY=" + org.URL, "HOLOPROXY_HTTP_SERVER=" + front})
	if !strings.Contains(p.log.String(), "upstream="+org.URL) {
		t.Errorf("holoproxy did not take its upstream from go env GOPROXY:\n%s", p.log.String())
	}
	if !strings.Contains(p.log.String(), "http_server="+front) {
		t.Errorf("holoproxy does not say it serves with %s:\n%s", front, p.log.String())
	}

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	hc := &http.Client{}
	type result struct {
		key  string
		body []byte
		err  error
	}
	results := make(chan result, n)
	for _, m := range mods {
		k := fileKeys(t, m)[2]
		go func() {
			body, err := fetch(ctx, hc, p.addr, k)
			results <- result{k, body, err}
		}()
	}
	// Every zip is half sent by the origin and held: n fills are in flight.
	for i := 0; i < n; i++ {
		select {
		case <-org.zipStarted:
		case <-ctx.Done():
			t.Fatalf("only %d of %d zip fills reached the origin", i, n)
		}
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	for !strings.Contains(p.log.String(), "shutting down") {
		select {
		case <-p.done:
			t.Fatalf("holoproxy exited on SIGTERM with fills in flight: %v\n%s", p.err, p.log.String())
		case <-ctx.Done():
			t.Fatalf("holoproxy did not start shutting down\n%s", p.log.String())
		case <-time.After(10 * time.Millisecond):
		}
	}
	close(hold) // let the origin finish: the answers in flight must complete
	for i := 0; i < n; i++ {
		r := <-results
		if r.err != nil {
			t.Errorf("in-flight download failed during shutdown: %v", r.err)
			continue
		}
		if want, _ := org.file(r.key); !bytes.Equal(r.body, want) {
			t.Errorf("%s: got %d bytes differing from the origin's %d", r.key, len(r.body), len(want))
		}
	}
	if err := p.wait(t); err != nil {
		t.Errorf("holoproxy exited with %v after SIGTERM; want exit status 0\n%s", err, p.log.String())
	}
	st := verifyStore(t, cacheDir, org)
	if len(st.tmp) > 0 {
		t.Errorf("after SIGTERM the store's .tmp holds %q", st.tmp)
	}
	for _, m := range mods {
		if k := fileKeys(t, m)[2]; !st.keys[k] {
			t.Errorf("%s was served during shutdown but not stored", k)
		}
	}
}

// TestSecondServeKeepsFillsOfTheFirst: a second process opening the same cache directory
// (a second serve: a blue/green switch, or warm --to beside a serve) must not take the
// temporary files of the first one's fills in progress: the first answers and stores its
// zip, and once both stopped nothing is left under .tmp.
func TestSecondServeKeepsFillsOfTheFirst(t *testing.T) {
	mods := bigModules("twice.test/m", 1, 1<<20)
	org := newOrigin(t, mods)
	org.zipChunk, org.zipPause = 64<<10, time.Millisecond
	hold := make(chan struct{})
	org.zipHold = hold
	cacheDir := t.TempDir()
	args := []string{"--cache-dir=" + cacheDir, "--upstream=" + org.URL, "--prefetch=0"}
	first := startHoloproxy(t, args, nil)

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	key := fileKeys(t, mods[0])[2]
	type result struct {
		body []byte
		err  error
	}
	done := make(chan result, 1)
	go func() {
		body, err := fetch(ctx, &http.Client{}, first.addr, key)
		done <- result{body, err}
	}()
	select {
	case <-org.zipStarted: // half of the zip is in the first serve's temporary file
	case <-ctx.Done():
		t.Fatal("the zip fill never reached the origin")
	}
	second := startHoloproxy(t, args, nil)
	close(hold)
	r := <-done
	if want, _ := org.file(key); r.err != nil || !bytes.Equal(r.body, want) {
		t.Fatalf("the first serve's answer after a second serve opened the cache: %d bytes, %v; want the origin's %d",
			len(r.body), r.err, len(want))
	}
	for _, p := range []*proc{first, second} {
		p.cmd.Process.Signal(syscall.SIGTERM)
		if err := p.wait(t); err != nil {
			t.Errorf("holoproxy exited with %v after SIGTERM\n%s", err, p.log.String())
		}
	}
	st := verifyStore(t, cacheDir, org)
	if !st.keys[key] {
		t.Errorf("%s was answered but not stored\n%s", key, first.log.String())
	}
	if len(st.tmp) > 0 {
		t.Errorf("after both stopped the store's .tmp holds %q", st.tmp)
	}
}

// TestHangupStopsCleanly: SIGHUP (the terminal or ssh session that started holoproxy went
// away) stops serve as SIGTERM does, where Go's default would kill it halfway.
func TestHangupStopsCleanly(t *testing.T) {
	mods := bigModules("hup.test/m", 1, 1<<10)
	org := newOrigin(t, mods)
	cacheDir := t.TempDir()
	p := startHoloproxy(t, []string{"--cache-dir=" + cacheDir, "--upstream=" + org.URL}, nil)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	key := fileKeys(t, mods[0])[2]
	if _, err := fetch(ctx, &http.Client{}, p.addr, key); err != nil {
		t.Fatal(err)
	}
	p.cmd.Process.Signal(syscall.SIGHUP)
	if err := p.wait(t); err != nil {
		t.Errorf("holoproxy exited with %v after SIGHUP; want exit status 0\n%s", err, p.log.String())
	}
	if !strings.Contains(p.log.String(), "shutting down") || !strings.Contains(p.log.String(), "msg=stopped") {
		t.Errorf("the log does not show a graceful shutdown:\n%s", p.log.String())
	}
	if st := verifyStore(t, cacheDir, org); len(st.tmp) > 0 || !st.keys[key] {
		t.Errorf("after SIGHUP: .tmp holds %q, %s stored: %v", st.tmp, key, st.keys[key])
	}

	// Started with SIGHUP ignored, as nohup starts it: SIGHUP changes nothing.
	nohup := filepath.Join(t.TempDir(), "nohup-holoproxy")
	script := "#!/bin/sh\ntrap '' HUP\nexec " + holoproxyBinary(t) + " \"$@\"\n"
	if err := os.WriteFile(nohup, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	p = startHoloproxyBinary(t, nohup, []string{"--cache-dir=" + cacheDir, "--upstream=" + org.URL}, nil)
	p.cmd.Process.Signal(syscall.SIGHUP)
	time.Sleep(200 * time.Millisecond) // a handled SIGHUP would start the shutdown now
	if _, err := fetch(ctx, &http.Client{}, p.addr, key); err != nil {
		t.Errorf("started with SIGHUP ignored, after SIGHUP: %v\n%s", err, p.log.String())
	}
	if strings.Contains(p.log.String(), "shutting down") {
		t.Errorf("started with SIGHUP ignored, SIGHUP started a shutdown:\n%s", p.log.String())
	}
}
