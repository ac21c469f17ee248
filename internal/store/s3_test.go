package store

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"github.com/minio/minio-go/v7/pkg/s3utils"

	"github.com/holoproxy/holoproxy/internal/lab"
)

func TestParseS3URL(t *testing.T) {
	for _, tc := range []struct{ in, bucket, prefix, err string }{
		{in: "s3://cache", bucket: "cache"},
		{in: "s3://cache/", bucket: "cache"},
		{in: "s3://cache/team/go", bucket: "cache", prefix: "team/go/"},
		{in: "s3://cache/team/go/", bucket: "cache", prefix: "team/go/"},
		{in: "https://cache/x", err: "want s3://BUCKET"},
		{in: "s3:///x", err: "want s3://BUCKET"},
		{in: "s3://key:secret@cache", err: "want s3://BUCKET"},
		{in: "s3://cache/a/../b", err: "prefix"},
		{in: "s3://cache/a?x=1", err: "want s3://BUCKET"},
		{in: "s3://b1", err: "bucket name"},
		{in: "s3://Cache_Bucket", err: "bucket name"},
	} {
		b, p, err := ParseS3URL(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ParseS3URL(%q) = %q, %q, %v; want error with %q", tc.in, b, p, err, tc.err)
			}
			continue
		}
		if err != nil || b != tc.bucket || p != tc.prefix {
			t.Errorf("ParseS3URL(%q) = %q, %q, %v; want %q, %q", tc.in, b, p, err, tc.bucket, tc.prefix)
		}
	}
}

func s3Bucket(t *testing.T, srv *lab.S3Server, url, secret string) *S3Bucket {
	t.Helper()
	b, err := NewS3Bucket(S3Config{URL: url, Endpoint: srv.Endpoint,
		Creds: credentials.NewStaticV4(srv.AccessKey, secret, ""), UserAgent: "holoproxy/test"})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// The shared tier against a real S3 server (Versity's gateway, which checks signatures):
// replicas fill each other, an object altered in the server's own files is refused, and a
// server that went away is skipped.
func TestS3SharedTier(t *testing.T) {
	srv := lab.StartS3(t)
	srv.MakeBucket(t, "cache")
	ctx := context.Background()

	if err := s3Bucket(t, srv, "s3://cache", "wrong-secret").Check(ctx); err == nil || !strings.Contains(err.Error(), "403") {
		t.Errorf("Check with a wrong secret = %v, want the server's 403", err)
	}
	if err := s3Bucket(t, srv, "s3://nothere", srv.SecretKey).Check(ctx); err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Errorf("Check of a missing bucket = %v, want 'does not exist'", err)
	}
	bucket := s3Bucket(t, srv, "s3://cache/team", srv.SecretKey)
	if err := bucket.Check(ctx); err != nil {
		t.Fatal(err)
	}
	replica := func() *Shared {
		d, err := OpenDisk(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		return &Shared{Local: d, Bucket: bucket, Timeout: 2 * time.Second, Backoff: time.Hour,
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	}
	a := replica()
	zip := strings.Repeat("0123456789abcdef", 3<<16) // 3 MiB
	keys := map[string]string{
		"github.com/!azure/go-autorest/@v/v14.2.0+incompatible.zip":  zip,
		"example.com/m/v2/@v/v2.0.0-20240101000000-abcdefabcdef.mod": "module example.com/m/v2\n",
		"example.com/m/@v/v1.1.0.info":                               `{"Version":"v1.1.0"}`,
	}
	for k, v := range keys {
		commitString(t, a, k, v)
	}
	if st := a.Stats(); st.Uploads != 3 || st.UploadErrors != 0 {
		t.Fatalf("uploads: %+v", st)
	}
	// The objects are where the prefix says, whole.
	zkey := "github.com/!azure/go-autorest/@v/v14.2.0+incompatible.zip"
	if fi, err := os.Stat(srv.ObjectPath("cache", "team/"+zkey)); err != nil || fi.Size() != int64(len(zip)) {
		t.Fatalf("object file: %v, %v", fi, err)
	}

	c := replica()
	for k, v := range keys {
		got, info, err := readEntry(t, c, k)
		if err != nil || got != v {
			t.Fatalf("%s through the bucket: %d bytes, %v", k, len(got), err)
		}
		if d := time.Since(info.ModTime); d < 0 || d > time.Minute {
			t.Errorf("%s: ModTime %v is not the object's time", k, info.ModTime)
		}
	}
	if st := c.Stats(); st.Hits != 3 || st.Corrupt != 0 {
		t.Fatalf("replica stats: %+v", st)
	}
	if _, _, err := readEntry(t, c, "example.com/m/@v/v9.9.9.info"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("a key in no tier: %v", err)
	}
	if st := c.Stats(); st.Misses != 1 || st.Errors != 0 || st.Down {
		t.Fatalf("a miss counted as %+v", st)
	}

	// Alter the zip in the server's files, same length: the next replica refuses it.
	p := srv.ObjectPath("cache", "team/"+zkey)
	if err := os.WriteFile(p, []byte(strings.Repeat("X", len(zip))), 0o644); err != nil {
		t.Fatal(err)
	}
	d := replica()
	if _, _, err := readEntry(t, d, zkey); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("altered object: %v, want not-exist", err)
	}
	if st := d.Stats(); st.Corrupt != 1 {
		t.Fatalf("altered object counted as %+v", st)
	}

	// Delete removes both tiers.
	if err := a.Delete(ctx, "example.com/m/@v/v1.1.0.info"); err != nil {
		t.Fatal(err)
	}
	if _, err := bucket.Stat(ctx, "example.com/m/@v/v1.1.0.info"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("deleted object still in the bucket: %v", err)
	}

	// A server that went away: a miss costs one refused connection, then it is skipped.
	srv.Stop()
	e := replica()
	start := time.Now()
	if _, _, err := readEntry(t, e, "example.com/m/v2/@v/v2.0.0-20240101000000-abcdefabcdef.mod"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("read with the server gone: %v", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("read with the server gone took %v", d)
	}
	if st := e.Stats(); st.Errors != 1 || !st.Down {
		t.Fatalf("server gone, stats %+v", st)
	}
}

// A bucket that hangs (its server stopped, its socket still accepting) costs a read its
// first-byte Timeout and a commit its transfer time, never more; the disk keeps what was
// committed, and the bucket is used again once it answers.
func TestS3StalledBucket(t *testing.T) {
	srv := lab.StartS3(t)
	srv.MakeBucket(t, "cache")
	bucket := s3Bucket(t, srv, "s3://cache", srv.SecretKey)
	d, err := OpenDisk(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	s := &Shared{Local: d, Bucket: bucket, Timeout: 300 * time.Millisecond, MinRate: 1 << 30,
		Backoff: 200 * time.Millisecond, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	commitString(t, s, "m/@v/v1.0.0.mod", "module m\n")
	if st := s.Stats(); st.Uploads != 1 {
		t.Fatalf("upload before the stall: %+v", st)
	}

	if err := srv.Pause(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	commitString(t, s, "m/@v/v1.1.0.mod", "module m\n")
	if el := time.Since(start); el > 3*time.Second {
		t.Errorf("a commit to a hung bucket took %v (transfer time ~%v)", el, s.transferFor(9))
	}
	if st := s.Stats(); st.UploadErrors != 1 || !st.Down {
		t.Errorf("commit to a hung bucket: %+v, want an upload error and the bucket down", st)
	}
	if got, _, err := readEntry(t, s, "m/@v/v1.1.0.mod"); err != nil || got != "module m\n" {
		t.Fatalf("the disk lost the commit: %q, %v", got, err)
	}
	time.Sleep(250 * time.Millisecond) // past the backoff: the next read asks the bucket
	start = time.Now()
	if _, _, err := readEntry(t, s, "m/@v/v9.0.0.mod"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("read of a hung bucket: %v", err)
	}
	if el := time.Since(start); el > 3*time.Second {
		t.Errorf("a read of a hung bucket took %v (Timeout %v)", el, s.Timeout)
	}
	if st := s.Stats(); st.Errors != 1 {
		t.Errorf("read of a hung bucket: %+v, want one error", st)
	}

	if err := srv.Resume(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(250 * time.Millisecond)
	commitString(t, s, "m/@v/v1.2.0.mod", "module m\n")
	if st := s.Stats(); st.Uploads != 2 || st.Down {
		t.Errorf("after the bucket came back: %+v, want a second upload", st)
	}
}

// BucketStore reads a bucket as a Store: Walk lists it (the prefix's keys only), Open gives
// an object holoproxy did not write as it is (verify then checks it against the checksum
// database), and nothing can be committed.
func TestBucketStore(t *testing.T) {
	srv := lab.StartS3(t)
	srv.MakeBucket(t, "cache")
	ctx := context.Background()
	put := func(name, data string) {
		t.Helper()
		if _, err := srv.Client(t).PutObject(ctx, "cache", name, strings.NewReader(data), int64(len(data)), minio.PutObjectOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	put("team/a/@v/v1.0.0.mod", "module a\n")
	put("team/b/@v/v1.0.0.mod", "module b\n")
	put("other/c/@v/v1.0.0.mod", "module c\n")
	bs := &BucketStore{Bucket: s3Bucket(t, srv, "s3://cache/team", srv.SecretKey), TempDir: t.TempDir()}
	var keys []string
	if err := bs.Walk(ctx, "", func(key string, info Info) error {
		keys = append(keys, key)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if strings.Join(keys, " ") != "a/@v/v1.0.0.mod b/@v/v1.0.0.mod" {
		t.Fatalf("Walk = %v", keys)
	}
	got, info, err := readEntry(t, bs, "b/@v/v1.0.0.mod")
	if err != nil || got != "module b\n" || info.Size != 9 {
		t.Fatalf("Open of a foreign object = %q, %+v, %v", got, info, err)
	}
	if _, err := bs.Stat(ctx, "b/@v/v1.0.0.mod"); err != nil {
		t.Fatalf("Stat: %v", err)
	}
	if _, err := bs.Stat(ctx, "b/@v/v1.0.0.mo"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Stat of a key that is only a prefix of one: %v", err)
	}
	tmp, err := bs.CreateTemp(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := bs.Commit(ctx, "c/@v/v1.0.0.mod", tmp); err == nil {
		t.Fatal("Commit to a BucketStore succeeded")
	}
	if entries, _ := os.ReadDir(bs.TempDir); len(entries) != 0 {
		t.Fatalf("temporary files left: %v", entries)
	}
}

// FuzzParseS3URL checks that a --shared-cache URL is read or refused with a one-line error
// that never shows a password of the URL, and that what is read is a valid bucket name and
// a key prefix ("" or a valid store key and '/') that s3://BUCKET/PREFIX reads back as.
func FuzzParseS3URL(f *testing.F) {
	for _, s := range []string{
		"s3://cache", "s3://cache/", "s3://cache/team/go", "s3://cache/team/go/", "https://cache/x", "s3:///x",
		"s3://key:s3cr3tkey@cache", "s3://cache/a/../b", "s3://cache/a?x=1", "s3://b1", "s3://Cache_Bucket",
		"s3://cache//x", "s3://cache/.tmp/x", "s3://cache/a%2Fb", "s3://cache/a\\b", "s3://cache#f", "s3://cache:9000",
		"s3://key:s3cr3tkey@cache/%zz", "s3://key:s3cr3tkey@ca che",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		bucket, prefix, err := ParseS3URL(raw)
		if err != nil {
			msg := err.Error()
			if strings.ContainsAny(msg, "\r\n") {
				t.Fatalf("ParseS3URL(%q): error of more than one line: %q", raw, msg)
			}
			if _, rest, ok := strings.Cut(raw, "://"); ok {
				if userinfo, _, ok := strings.Cut(rest, "@"); ok && !strings.ContainsAny(userinfo, "/?#") {
					if _, pw, ok := strings.Cut(userinfo, ":"); ok && len(pw) >= 6 && strings.Count(raw, pw) == 1 && strings.Contains(msg, pw) {
						t.Fatalf("ParseS3URL(%q): error %q shows the password", raw, msg)
					}
				}
			}
			return
		}
		if err := s3utils.CheckValidBucketNameStrict(bucket); err != nil {
			t.Fatalf("ParseS3URL(%q) = bucket %q: %v", raw, bucket, err)
		}
		if prefix != "" {
			if !strings.HasSuffix(prefix, "/") || CheckKey(strings.TrimSuffix(prefix, "/")) != nil {
				t.Fatalf("ParseS3URL(%q) = prefix %q", raw, prefix)
			}
		}
		b, p, err := ParseS3URL("s3://" + bucket + "/" + prefix)
		if err != nil || b != bucket || p != prefix {
			t.Fatalf("ParseS3URL(%q) = %q, %q, which reads back as %q, %q, %v", raw, bucket, prefix, b, p, err)
		}
	})
}
