package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/holoproxy/holoproxy/internal/checksum/sumdbtest"
	"github.com/holoproxy/holoproxy/internal/lab"
	"github.com/holoproxy/holoproxy/internal/lab/modtree"
)

// TestSharedCacheReplicas: two replicas over one S3 bucket (a real S3 server, Versity's
// gateway). The go command downloads and builds through replica A; with the origin gone,
// the go command downloads and builds through replica B, whose own disk was empty: every
// file comes from the bucket, verified, with the honest go.sum. An object altered in the
// bucket is refused and fetched from upstream again; a bucket the service refuses stops
// serve at start; a bucket that goes away costs nothing but its use.
func TestSharedCacheReplicas(t *testing.T) {
	srv := lab.StartS3(t)
	srv.MakeBucket(t, "gomods")
	env := []string{"AWS_ACCESS_KEY_ID=" + srv.AccessKey, "AWS_SECRET_ACCESS_KEY=" + srv.SecretKey}
	shared := []string{"--shared-cache=s3://gomods/team", "--s3-endpoint=" + srv.Endpoint, "--prefetch=0"}

	mods, roots := fixtureModules()
	org := newOrigin(t, mods)
	a := startHoloproxy(t, append([]string{"--cache-dir=" + t.TempDir(), "--upstream=" + org.URL}, shared...), env)
	downloadAndBuild(t, newApp(t, "http://"+a.addr, mods, roots), nil, "through replica A", sumLineSet(t, mods))
	a.cmd.Process.Signal(syscall.SIGTERM) // commits (and their uploads) finish before it exits
	if err := a.wait(t); err != nil {
		t.Fatalf("replica A did not stop cleanly: %v", err)
	}
	if !strings.Contains(a.log.String(), "shared_cache=s3://gomods/team") {
		t.Errorf("replica A's serving line does not name the shared cache")
	}
	originURL := org.URL
	org.Close()

	// Replica B has no keys of its own: it runs with an instance role, its credentials
	// from the instance metadata service.
	imds := lab.StartIMDS(t, srv.AccessKey, srv.SecretKey, time.Hour)
	cacheB := t.TempDir()
	b := startHoloproxy(t, append([]string{"--cache-dir=" + cacheB, "--upstream=" + originURL}, shared...),
		[]string{"AWS_EC2_METADATA_DISABLED=", "AWS_EC2_METADATA_SERVICE_ENDPOINT=" + imds.URL})
	downloadAndBuild(t, newApp(t, "http://"+b.addr, mods, roots), nil, "through replica B, origin gone", sumLineSet(t, mods))
	if !strings.Contains(b.log.String(), `credentials="instance metadata"`) || imds.Fetches() == 0 {
		t.Errorf("replica B: %d credential fetches from the metadata service, log without its credential source", imds.Fetches())
	}
	m := scrape(t, b.addr)
	if m[`holoproxy_shared_cache_reads_total{result="hit"}`] == 0 || m[`holoproxy_shared_cache_reads_total{result="error"}`] != 0 ||
		m[`holoproxy_shared_cache_reads_total{result="corrupt"}`] != 0 || m["holoproxy_shared_cache_up"] != 1 {
		t.Errorf("replica B's shared cache metrics: hit %v, error %v, corrupt %v, up %v",
			m[`holoproxy_shared_cache_reads_total{result="hit"}`], m[`holoproxy_shared_cache_reads_total{result="error"}`],
			m[`holoproxy_shared_cache_reads_total{result="corrupt"}`], m["holoproxy_shared_cache_up"])
	}
	if m[`holoproxy_shared_cache_request_duration_seconds_count{op="get",result="ok"}`] == 0 {
		t.Errorf("no bucket GET latency observed on replica B")
	}
	var doc struct {
		Store struct {
			Shared struct {
				Bucket string `json:"bucket"`
				Hits   int64  `json:"hits"`
			} `json:"shared"`
		} `json:"store"`
	}
	if _, body, _ := get(t, "http://"+b.addr+"/api/chain"); json.Unmarshal(body, &doc) != nil ||
		doc.Store.Shared.Bucket != "s3://gomods/team/" || doc.Store.Shared.Hits == 0 {
		t.Errorf("/api/chain shared cache = %+v; want the bucket and its hits", doc.Store.Shared)
	}
	_, metricsB, _ := get(t, "http://"+b.addr+"/metrics")
	for what, text := range map[string]string{"replica A's log": a.log.String(), "replica B's log": b.log.String(),
		"/metrics": string(metricsB)} {
		if strings.Contains(text, srv.SecretKey) {
			t.Errorf("the bucket's secret key appears in %s", what)
		}
	}
	// What B copied is on its disk, whole: it verifies against the origin's files.
	if st := verifyStore(t, cacheB, org); len(st.keys) == 0 {
		t.Errorf("replica B's disk holds nothing after serving from the bucket")
	}

	// An altered object (same length) is refused; the answer comes from upstream, and the
	// commit puts the right bytes back in the bucket.
	org2 := newOrigin(t, mods)
	zkey := strings.TrimPrefix(treeFile(t, "", mods[0], ".zip"), "/")
	want, err := os.ReadFile(treeFile(t, org2.dir, mods[0], ".zip"))
	if err != nil {
		t.Fatal(err)
	}
	obj := srv.ObjectPath("gomods", "team/"+zkey)
	if err := os.WriteFile(obj, bytes.Repeat([]byte{'X'}, len(want)), 0o644); err != nil {
		t.Fatal(err)
	}
	c := startHoloproxy(t, append([]string{"--cache-dir=" + t.TempDir(), "--upstream=" + org2.URL}, shared...), env)
	code, body, h := get(t, "http://"+c.addr+"/"+zkey)
	if code != http.StatusOK || !bytes.Equal(body, want) || h.Get("X-Holoproxy-Cache") != "miss" {
		t.Fatalf("GET %s with its object altered: %d, %d bytes, cache %q; want 200, the origin's zip, a miss",
			zkey, code, len(body), h.Get("X-Holoproxy-Cache"))
	}
	if m := scrape(t, c.addr); m[`holoproxy_shared_cache_reads_total{result="corrupt"}`] != 1 {
		t.Errorf("altered object not counted as corrupt: %v", m[`holoproxy_shared_cache_reads_total{result="corrupt"}`])
	}
	if waitLog(c, "does not match its digest", zkey) == "" {
		t.Errorf("no log line names the altered object")
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		if got, _ := os.ReadFile(obj); bytes.Equal(got, want) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the altered object was not replaced within 15s")
		}
		time.Sleep(50 * time.Millisecond)
	}

	// A bucket the service refuses stops serve before it listens, saying why.
	for name, tc := range map[string]struct {
		env  []string
		flag string
		want string
	}{
		"wrong secret":   {[]string{"AWS_ACCESS_KEY_ID=" + srv.AccessKey, "AWS_SECRET_ACCESS_KEY=wrong"}, "--shared-cache=s3://gomods", "AccessDenied"},
		"missing bucket": {env, "--shared-cache=s3://nothere", `the bucket "nothere" does not exist`},
		"no endpoint":    {env, "--shared-cache=s3://gomods", "--s3-endpoint"},
	} {
		args := []string{"serve", "--listen=127.0.0.1:0", "--cache-dir=" + t.TempDir(), "--upstream=" + org2.URL, tc.flag}
		if name != "no endpoint" {
			args = append(args, "--s3-endpoint="+srv.Endpoint)
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		cmd := exec.CommandContext(ctx, holoproxyBinary(t), args...)
		cmd.Env = append(append(os.Environ(), "HOLOPROXY_SUMDB=off", "AWS_ENDPOINT_URL=", "AWS_ENDPOINT_URL_S3="), tc.env...)
		out, err := cmd.CombinedOutput()
		cancel()
		if err == nil || !strings.Contains(string(out), tc.want) || strings.Contains(string(out), "msg=serving") {
			t.Errorf("%s: serve exited with %v; want it refused before serving, saying %q:\n%s", name, err, tc.want, out)
		}
	}

	// The bucket goes away: a replica serves from upstream, pausing its use of the bucket.
	srv.Stop()
	d := startHoloproxy(t, append([]string{"--cache-dir=" + t.TempDir(), "--upstream=" + org2.URL}, shared...), env)
	if waitLog(d, "shared cache unreachable at start") == "" {
		t.Errorf("no warning that the bucket is unreachable at start")
	}
	ikey := strings.TrimPrefix(treeFile(t, "", mods[1], ".info"), "/")
	start := time.Now()
	if code, _, h := get(t, "http://"+d.addr+"/"+ikey); code != http.StatusOK || h.Get("X-Holoproxy-Cache") != "miss" {
		t.Fatalf("GET %s with the bucket gone: %d, cache %q", ikey, code, h.Get("X-Holoproxy-Cache"))
	}
	if el := time.Since(start); el > 10*time.Second {
		t.Errorf("GET with the bucket gone took %v", el)
	}
	if m := scrape(t, d.addr); m["holoproxy_shared_cache_up"] != 0 || m[`holoproxy_shared_cache_reads_total{result="error"}`] == 0 {
		t.Errorf("bucket gone: up %v, read errors %v; want 0 and some", m["holoproxy_shared_cache_up"], m[`holoproxy_shared_cache_reads_total{result="error"}`])
	}
}

// TestSharedCacheCheckedLikeAnUpstream: whoever may write the bucket can record a digest of
// anything, so what a replica copies from it passes the checks of an upstream's answer. A
// .mod naming another module and a zip altered inside (both with matching digests) are
// refused, the first by validation, the second by the checksum database; the go command
// gets the honest files from upstream, and the bucket gets them back.
func TestSharedCacheCheckedLikeAnUpstream(t *testing.T) {
	srv := lab.StartS3(t)
	srv.MakeBucket(t, "gomods")
	mods, roots := fixtureModules()
	db := sumdbtest.New(t, mods)
	org := newOrigin(t, mods)

	put := func(key string, data []byte) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		sum := sha256.Sum256(data)
		_, err := srv.Client(t).PutObject(ctx, "gomods", key, bytes.NewReader(data), int64(len(data)),
			minio.PutObjectOptions{UserMetadata: map[string]string{"Holoproxy-Sha256": hex.EncodeToString(sum[:])}})
		if err != nil {
			t.Fatal(err)
		}
	}
	zipMod, modMod := mods[0], mods[1]
	zkey := strings.TrimPrefix(treeFile(t, "", zipMod, ".zip"), "/")
	mkey := strings.TrimPrefix(treeFile(t, "", modMod, ".mod"), "/")
	honestZip, err := os.ReadFile(treeFile(t, org.dir, zipMod, ".zip"))
	if err != nil {
		t.Fatal(err)
	}
	bad, err := modtree.TamperZip(honestZip)
	if err != nil {
		t.Fatal(err)
	}
	put(zkey, bad)
	put(mkey, []byte("module evil.test/other\n"))

	p := startHoloproxy(t, append([]string{"--cache-dir=" + t.TempDir(), "--upstream=" + org.URL, "--prefetch=0",
		"--shared-cache=s3://gomods", "--s3-endpoint=" + srv.Endpoint}, sumdbArgs(db, "")...),
		[]string{"AWS_ACCESS_KEY_ID=" + srv.AccessKey, "AWS_SECRET_ACCESS_KEY=" + srv.SecretKey})
	downloadAndBuild(t, newApp(t, "http://"+p.addr, mods, roots), []string{"GOSUMDB=" + db.Key},
		"with poisoned objects in the bucket", sumLineSet(t, mods))
	if m := scrape(t, p.addr); m[`holoproxy_shared_cache_reads_total{result="refused"}`] != 2 {
		t.Errorf("refused bucket objects: %v, want 2", m[`holoproxy_shared_cache_reads_total{result="refused"}`])
	}
	for _, key := range []string{zkey, mkey} {
		if waitLog(p, "shared cache object refused", key) == "" {
			t.Errorf("no log line says %s was refused", key)
		}
	}
	honestMod, err := os.ReadFile(treeFile(t, org.dir, modMod, ".mod"))
	if err != nil {
		t.Fatal(err)
	}
	for key, want := range map[string][]byte{zkey: honestZip, mkey: honestMod} {
		deadline := time.Now().Add(15 * time.Second)
		for {
			if got, _ := os.ReadFile(srv.ObjectPath("gomods", key)); bytes.Equal(got, want) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the poisoned %s was not replaced in the bucket within 15s", key)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

// TestSharedCacheOverTLS: the bucket's service over HTTPS, as S3 always is, with a
// certificate of a private CA: trusted through --ca-file, the go command builds through a
// replica that fills the bucket; without the CA, serve stops at start naming the
// certificate, rather than skip the bucket for ever.
func TestSharedCacheOverTLS(t *testing.T) {
	ca, err := lab.NewCA(filepath.Join(t.TempDir(), "ca.pem"), "holoproxy shared cache test CA")
	if err != nil {
		t.Fatal(err)
	}
	srv := lab.StartS3TLS(t, ca)
	srv.MakeBucket(t, "gomods")
	env := []string{"AWS_ACCESS_KEY_ID=" + srv.AccessKey, "AWS_SECRET_ACCESS_KEY=" + srv.SecretKey}
	mods, roots := fixtureModules()
	org := newOrigin(t, mods)
	args := []string{"--cache-dir=" + t.TempDir(), "--upstream=" + org.URL, "--prefetch=0",
		"--shared-cache=s3://gomods", "--s3-endpoint=" + srv.Endpoint}

	p := startHoloproxy(t, append(args, "--ca-file="+ca.CertFile()), env)
	downloadAndBuild(t, newApp(t, "http://"+p.addr, mods, roots), nil, "through a replica over an HTTPS bucket", sumLineSet(t, mods))
	p.cmd.Process.Signal(syscall.SIGTERM)
	if err := p.wait(t); err != nil {
		t.Fatalf("replica did not stop cleanly: %v", err)
	}
	zkey := strings.TrimPrefix(treeFile(t, "", mods[0], ".zip"), "/")
	if _, err := os.Stat(srv.ObjectPath("gomods", zkey)); err != nil {
		t.Errorf("the replica put nothing in the bucket over HTTPS: %v", err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, holoproxyBinary(t), append([]string{"serve", "--listen=127.0.0.1:0"}, args...)...)
	cmd.Env = append(append(os.Environ(), "HOLOPROXY_SUMDB=off"), env...)
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "certificate") || strings.Contains(string(out), "msg=serving") {
		t.Errorf("serve with a bucket whose certificate it does not trust: %v; want it stopped at start naming the certificate:\n%s", err, out)
	}
	t.Logf("without the CA: %s", strings.TrimSpace(string(out)))
}

// TestSharedCacheUnderSizeBound: --cache-max-size bounds the replica's disk, never the
// bucket: a zip evicted from the disk comes back from the bucket, not from upstream.
func TestSharedCacheUnderSizeBound(t *testing.T) {
	srv := lab.StartS3(t)
	srv.MakeBucket(t, "gomods")
	const zipSize, n, max = 64 << 10, 10, 300 << 10
	mods := bigModules("mods.test/sharedevict", n, zipSize)
	org := newOrigin(t, mods)
	p := startHoloproxy(t, []string{"--cache-dir=" + t.TempDir(), "--upstream=" + org.URL, "--cache-max-size=300KiB",
		"--prefetch=0", "--shared-cache=s3://gomods", "--s3-endpoint=" + srv.Endpoint},
		[]string{"AWS_ACCESS_KEY_ID=" + srv.AccessKey, "AWS_SECRET_ACCESS_KEY=" + srv.SecretKey})
	base := "http://" + p.addr + "/"
	want := getInOrder(t, base, mods)
	waitEvicted(t, p.addr, max)
	first := fileKeys(t, mods[0])[2] // its zip, read longest ago: evicted
	before := org.counts()[first]
	code, body, h := get(t, base+first)
	if code != http.StatusOK || !bytes.Equal(body, want[first]) || h.Get("X-Holoproxy-Cache") != "hit" {
		t.Errorf("GET %s after eviction: %d, %d bytes, cache %q; want 200, the zip, a hit from the bucket", first, code, len(body), h.Get("X-Holoproxy-Cache"))
	}
	if after := org.counts()[first]; after != before {
		t.Errorf("the origin was asked %d times for %s after its eviction, want 0: the bucket holds it", after-before, first)
	}
	if m := scrape(t, p.addr); m[`holoproxy_shared_cache_reads_total{result="hit"}`] < 1 {
		t.Errorf("no bucket hit counted")
	}
}

// TestVerifySharedBucket: holoproxy verify --shared-cache audits the bucket itself: an
// object whose content is not what the checksum database says (written with a matching
// digest) and an object whose content does not match its recorded digest both fail and,
// with --purge, are removed; the next run is clean.
func TestVerifySharedBucket(t *testing.T) {
	srv := lab.StartS3(t)
	srv.MakeBucket(t, "gomods")
	mods := []modtree.Module{{Path: "mods.test/sva", Version: "v1.0.0"}, {Path: "mods.test/svb", Version: "v1.0.0"},
		{Path: "mods.test/svc", Version: "v1.0.0"}}
	db := sumdbtest.New(t, mods)
	org := newOrigin(t, mods)
	env := []string{"AWS_ACCESS_KEY_ID=" + srv.AccessKey, "AWS_SECRET_ACCESS_KEY=" + srv.SecretKey}
	shared := []string{"--shared-cache=s3://gomods/team", "--s3-endpoint=" + srv.Endpoint}
	p := startHoloproxy(t, append(append([]string{"--cache-dir=" + t.TempDir(), "--upstream=" + org.URL, "--prefetch=0"},
		shared...), sumdbArgs(db, "")...), env)
	keys := map[int]string{} // the zip key of mods[i]
	for i, m := range mods {
		for _, ext := range []string{".mod", ".zip"} {
			key := strings.TrimPrefix(treeFile(t, "", m, ext), "/")
			if status, body, _ := get(t, "http://"+p.addr+"/"+key); status != http.StatusOK {
				t.Fatalf("GET %s: %d %s", key, status, body)
			}
			if ext == ".zip" {
				keys[i] = key
			}
		}
	}
	p.cmd.Process.Signal(syscall.SIGTERM) // its uploads finish first
	if err := p.wait(t); err != nil {
		t.Fatal(err)
	}
	// mods[1]'s zip: altered inside, with a digest that matches (only the database can
	// tell). mods[2]'s zip: its bytes changed behind the server's back (the digest tells).
	honest, err := os.ReadFile(treeFile(t, org.dir, mods[1], ".zip"))
	if err != nil {
		t.Fatal(err)
	}
	bad, err := modtree.TamperZip(honest)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(bad)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := srv.Client(t).PutObject(ctx, "gomods", "team/"+keys[1], bytes.NewReader(bad), int64(len(bad)),
		minio.PutObjectOptions{UserMetadata: map[string]string{"Holoproxy-Sha256": hex.EncodeToString(sum[:])}}); err != nil {
		t.Fatal(err)
	}
	obj2 := srv.ObjectPath("gomods", "team/"+keys[2])
	data, err := os.ReadFile(obj2)
	if err != nil {
		t.Fatal(err)
	}
	data[len(data)/2] ^= 0xff
	if err := os.WriteFile(obj2, data, 0o644); err != nil {
		t.Fatal(err)
	}

	verify := func(args ...string) (int, string) {
		t.Helper()
		return runVerify(t, env, append(append([]string{"--cache-dir=" + t.TempDir(), "--sumdb=" + db.GOSUMDB(),
			"--gonosumdb=", "--goprivate="}, shared...), args...)...)
	}
	code, out := verify("--purge")
	if code != 1 || !strings.Contains(out, "FAIL "+keys[1]) || !strings.Contains(out, "FAIL "+keys[2]) ||
		!strings.Contains(out, "SHA-256") || !strings.Contains(out, "purged 2") || !strings.Contains(out, "s3://gomods/team/") {
		t.Errorf("verify --shared-cache --purge: exit %d\n%s\nwant exit 1 naming both zips, purged 2", code, out)
	}
	t.Logf("verify --purge:\n%s", out)
	for _, i := range []int{1, 2} {
		if _, err := os.Stat(srv.ObjectPath("gomods", "team/"+keys[i])); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s still in the bucket after --purge (stat: %v)", keys[i], err)
		}
	}
	code, out = verify()
	if code != 0 || !strings.Contains(out, "checked 4: ok 4") {
		t.Errorf("verify after purge: exit %d\n%s\nwant exit 0 with 4 files ok", code, out)
	}
}
