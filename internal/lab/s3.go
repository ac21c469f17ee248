package lab

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// S3Command is the S3-compatible server the lab runs: Versity's S3 gateway (versitygw,
// Apache-2.0) over a directory, a real S3 implementation that checks signatures. .ci/run
// builds it from the version pinned in tools/s3gw/go.mod; HOLOPROXY_TEST_S3GW names another
// binary.
const S3Command = "versitygw"

// S3Server is an S3-compatible server on loopback for one test.
type S3Server struct {
	// Endpoint is its URL (http://127.0.0.1:PORT).
	Endpoint string
	// AccessKey and SecretKey are the credentials it accepts.
	AccessKey, SecretKey string
	// Dir is the directory it keeps buckets in: bucket B's object K is the file Dir/B/K.
	Dir string

	ca     *CA // the CA of its certificate, or nil for plain HTTP
	cmd    *exec.Cmd
	log    bytes.Buffer  // its output; read only once it exited
	waited chan struct{} // closed when it exited
}

// s3Binary finds the S3 server's binary.
func s3Binary() (string, error) {
	if p := os.Getenv("HOLOPROXY_TEST_S3GW"); p != "" {
		return p, nil
	}
	p, err := exec.LookPath(S3Command)
	if err != nil {
		return "", fmt.Errorf("no %s on PATH (.ci/run builds it: go build -C tools/s3gw -o /usr/local/bin/%s github.com/versity/versitygw/cmd/versitygw): %w", S3Command, S3Command, err)
	}
	return p, nil
}

// StartS3 starts an S3 server with an empty directory and stops it at the end of tb. It
// skips tb without a server binary, except under CI (CI=true), where it fails it.
func StartS3(tb testing.TB) *S3Server {
	tb.Helper()
	return StartS3TLS(tb, nil)
}

// StartS3TLS is StartS3 serving HTTPS with a certificate of ca for 127.0.0.1 and
// localhost (Endpoint is then https://127.0.0.1:PORT); a nil ca serves plain HTTP.
func StartS3TLS(tb testing.TB, ca *CA) *S3Server {
	tb.Helper()
	bin, err := s3Binary()
	if err != nil {
		if os.Getenv("CI") == "true" {
			tb.Fatalf("CI=true but the S3 server cannot run: %v", err)
		}
		tb.Skipf("skipping S3 test: %v", err)
	}
	secret := make([]byte, 16)
	rand.Read(secret)
	s := &S3Server{AccessKey: "holoproxy-test", SecretKey: hex.EncodeToString(secret), Dir: tb.TempDir(), ca: ca}
	var tlsArgs []string
	if ca != nil {
		dir := tb.TempDir()
		cert, key := filepath.Join(dir, "s3.crt"), filepath.Join(dir, "s3.key")
		if _, err := ca.IssueFiles(cert, key, "127.0.0.1", "localhost"); err != nil {
			tb.Fatal(err)
		}
		tlsArgs = []string{"--cert", cert, "--key", key}
	}
	if err := s.start(bin, tlsArgs); err != nil {
		tb.Fatalf("starting %s: %v\n%s", S3Command, err, s.log.String())
	}
	tb.Cleanup(func() {
		s.Stop()
		if tb.Failed() {
			tb.Logf("%s log:\n%s", S3Command, s.log.String())
		}
	})
	return s
}

func (s *S3Server) start(bin string, tlsArgs []string) error {
	// A free port: the gateway prints, but does not let a caller read, the port it got.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	addr := ln.Addr().String()
	ln.Close()
	s.Endpoint = "http://" + addr
	if tlsArgs != nil {
		s.Endpoint = "https://" + addr
	}
	args := append([]string{"--port", addr, "--access", s.AccessKey, "--secret", s.SecretKey, "--quiet", "--keep-alive"}, tlsArgs...)
	s.cmd = exec.Command(bin, append(args, "posix", s.Dir)...)
	s.cmd.Stdout, s.cmd.Stderr = &s.log, &s.log
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := s.cmd.Start(); err != nil {
		return err
	}
	exited := make(chan struct{})
	go func() { s.cmd.Wait(); close(exited) }()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return fmt.Errorf("exited at start")
		default:
		}
		if c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond); err == nil {
			c.Close()
			s.waited = exited
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	s.kill()
	<-exited
	return fmt.Errorf("not listening on %s after 20s", addr)
}

func (s *S3Server) kill() {
	if s.cmd.Process != nil {
		syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
	}
}

// Stop ends the server (and is a no-op once it has): requests to Endpoint are refused.
func (s *S3Server) Stop() {
	if s.waited == nil {
		return
	}
	s.kill()
	<-s.waited
}

// Pause stops the server's process (SIGSTOP) without closing its socket: connections are
// still accepted by the kernel, and nothing is answered, as from a hung service.
func (s *S3Server) Pause() error { return syscall.Kill(-s.cmd.Process.Pid, syscall.SIGSTOP) }

// Resume lets a paused server go on (SIGCONT).
func (s *S3Server) Resume() error { return syscall.Kill(-s.cmd.Process.Pid, syscall.SIGCONT) }

// Client returns an S3 client of the server with its credentials.
func (s *S3Server) Client(tb testing.TB) *minio.Client {
	tb.Helper()
	u, err := url.Parse(s.Endpoint)
	if err != nil {
		tb.Fatal(err)
	}
	opts := &minio.Options{Creds: credentials.NewStaticV4(s.AccessKey, s.SecretKey, ""), Secure: u.Scheme == "https"}
	if s.ca != nil {
		opts.Transport = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: s.ca.Pool()}}
	}
	c, err := minio.New(u.Host, opts)
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

// MakeBucket creates a bucket.
func (s *S3Server) MakeBucket(tb testing.TB, name string) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.Client(tb).MakeBucket(ctx, name, minio.MakeBucketOptions{}); err != nil {
		tb.Fatalf("making bucket %s: %v", name, err)
	}
}

// ObjectPath is the file that holds bucket's object key.
func (s *S3Server) ObjectPath(bucket, key string) string {
	return filepath.Join(s.Dir, bucket, filepath.FromSlash(key))
}

// NoInstanceMetadata keeps the S3 credential search (store.FindS3Credentials) of the
// process and its children off the cloud instance metadata service, whose link-local
// address is not the loopback tests may talk to: for a TestMain.
func NoInstanceMetadata() {
	os.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	for _, v := range []string{"AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI"} {
		os.Unsetenv(v)
	}
}
