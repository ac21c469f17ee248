package store

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/holoproxy/holoproxy/internal/lab"
)

// credentialEnv clears every source FindS3Credentials reads, for the rest of t.
func credentialEnv(t *testing.T) {
	for _, v := range []string{
		"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_ACCESS_KEY", "AWS_SECRET_KEY",
		"MINIO_ROOT_USER", "MINIO_ROOT_PASSWORD", "MINIO_ACCESS_KEY", "MINIO_SECRET_KEY",
		"AWS_PROFILE", "AWS_CONFIG_FILE",
		"AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ROLE_ARN", "AWS_ROLE_SESSION_NAME", "AWS_ENDPOINT_URL_STS", "AWS_REGION",
		"AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
		"AWS_CONTAINER_AUTHORIZATION_TOKEN", "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
		"AWS_EC2_METADATA_SERVICE_ENDPOINT",
	} {
		t.Setenv(v, "")
	}
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(t.TempDir(), "none"))
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	t.Setenv("HOME", t.TempDir())
}

// useBucket writes and reads back an object with creds: the S3 server (which checks
// signatures) accepted them.
func useBucket(t *testing.T, srv *lab.S3Server, c S3Credentials, key string) error {
	t.Helper()
	b, err := NewS3Bucket(S3Config{URL: "s3://creds", Endpoint: srv.Endpoint, Creds: c.Creds})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := b.Put(ctx, key, strings.NewReader("module m\n"), 9, ""); err != nil {
		return err
	}
	rc, _, err := b.Get(ctx, key)
	if err != nil {
		return err
	}
	defer rc.Close()
	got, err := io.ReadAll(rc)
	if err == nil && string(got) != "module m\n" {
		err = fmt.Errorf("read back %q", got)
	}
	return err
}

func TestS3CredentialsInstanceMetadata(t *testing.T) {
	srv := lab.StartS3(t)
	srv.MakeBucket(t, "creds")
	credentialEnv(t)
	imds := lab.StartIMDS(t, srv.AccessKey, srv.SecretKey, 2*time.Second)
	t.Setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", imds.URL)

	// Disabled: not asked, anonymous, and the server refuses anonymous writes.
	c, err := FindS3Credentials(context.Background())
	if err != nil || !strings.HasPrefix(c.Source, "anonymous") || imds.Fetches() != 0 {
		t.Fatalf("with AWS_EC2_METADATA_DISABLED=true: %q, %v, %d fetches; want anonymous, none", c.Source, err, imds.Fetches())
	}
	if err := useBucket(t, srv, c, "a.mod"); err == nil {
		t.Fatal("the S3 server took an anonymous write: the checks below would prove nothing")
	}

	t.Setenv("AWS_EC2_METADATA_DISABLED", "")
	c, err = FindS3Credentials(context.Background())
	if err != nil || c.Source != "instance metadata" {
		t.Fatalf("FindS3Credentials = %q, %v; want instance metadata", c.Source, err)
	}
	if err := useBucket(t, srv, c, "b.mod"); err != nil {
		t.Fatalf("with the instance role's credentials: %v", err)
	}
	// Temporary credentials are renewed from the same source once they expire (the
	// library renews at 80 % of their life).
	first := imds.Fetches()
	time.Sleep(2100 * time.Millisecond)
	if err := useBucket(t, srv, c, "c.mod"); err != nil {
		t.Fatalf("after the credentials expired: %v", err)
	}
	if n := imds.Fetches(); n <= first {
		t.Errorf("credential fetches %d after expiry, %d before: not renewed", n, first)
	}

	// Static credentials come first: the metadata service is not asked.
	before := imds.Fetches()
	t.Setenv("AWS_ACCESS_KEY_ID", srv.AccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", srv.SecretKey)
	c, err = FindS3Credentials(context.Background())
	if err != nil || c.Source != "environment (AWS_ACCESS_KEY_ID)" || imds.Fetches() != before {
		t.Fatalf("with AWS_ACCESS_KEY_ID set: %q, %v, metadata asked %d times", c.Source, err, imds.Fetches()-before)
	}
	if err := useBucket(t, srv, c, "d.mod"); err != nil {
		t.Fatal(err)
	}
}

func TestS3CredentialsNoMetadataService(t *testing.T) {
	credentialEnv(t)
	// A port nothing listens on: a machine that is not in a cloud.
	ln := httptest.NewServer(http.NotFoundHandler())
	url := ln.URL
	ln.Close()
	t.Setenv("AWS_EC2_METADATA_DISABLED", "")
	t.Setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", url)
	c, err := FindS3Credentials(context.Background())
	if err != nil || !strings.HasPrefix(c.Source, "anonymous") {
		t.Fatalf("FindS3Credentials = %q, %v; want anonymous", c.Source, err)
	}
}

func TestS3CredentialsSharedFile(t *testing.T) {
	credentialEnv(t)
	file := filepath.Join(t.TempDir(), "credentials")
	os.WriteFile(file, []byte("[default]\naws_access_key_id = AKIADEFAULT\naws_secret_access_key = s1\n[ci]\naws_access_key_id = AKIACI\naws_secret_access_key = s2\n"), 0o600)
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", file)
	t.Setenv("AWS_PROFILE", "ci")
	c, err := FindS3Credentials(context.Background())
	if err != nil || c.Source != "AWS shared credentials file ("+file+", profile ci)" {
		t.Fatalf("FindS3Credentials = %q, %v", c.Source, err)
	}
	if v, err := c.Creds.Get(); err != nil || v.AccessKeyID != "AKIACI" {
		t.Fatalf("credentials %q, %v; want the ci profile's", v.AccessKeyID, err)
	}
}

func TestS3CredentialsContainer(t *testing.T) {
	srv := lab.StartS3(t)
	srv.MakeBucket(t, "creds")
	credentialEnv(t)
	var asked atomic.Int64
	h := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		asked.Add(1)
		if r.URL.Path != "/v2/credentials/task" || r.Header.Get("Authorization") != "task-token" {
			http.Error(w, "forbidden", http.StatusForbidden)
			return
		}
		json.NewEncoder(w).Encode(map[string]any{"AccessKeyId": srv.AccessKey, "SecretAccessKey": srv.SecretKey,
			"Token": "", "Expiration": time.Now().Add(time.Hour).UTC().Format(time.RFC3339)})
	}))
	t.Cleanup(h.Close)
	t.Setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", h.URL+"/v2/credentials/task")
	t.Setenv("AWS_CONTAINER_AUTHORIZATION_TOKEN", "task-token")
	c, err := FindS3Credentials(context.Background())
	if err != nil || c.Source != "container credentials endpoint" {
		t.Fatalf("FindS3Credentials = %q, %v", c.Source, err)
	}
	if err := useBucket(t, srv, c, "e.mod"); err != nil {
		t.Fatal(err)
	}
	// Configured but refused: an error that says so, not anonymous.
	t.Setenv("AWS_CONTAINER_AUTHORIZATION_TOKEN", "wrong")
	if c, err := FindS3Credentials(context.Background()); err == nil || !strings.Contains(err.Error(), "container credentials endpoint") || !strings.Contains(err.Error(), "403") {
		t.Fatalf("with a refused token: %q, %v; want an error naming the source and the 403", c.Source, err)
	}
}

func TestS3CredentialsWebIdentity(t *testing.T) {
	srv := lab.StartS3(t)
	srv.MakeBucket(t, "creds")
	credentialEnv(t)
	tokenFile := filepath.Join(t.TempDir(), "token")
	os.WriteFile(tokenFile, []byte("service-account-jwt"), 0o600)
	sts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.ParseForm()
		if r.Form.Get("Action") != "AssumeRoleWithWebIdentity" || r.Form.Get("WebIdentityToken") != "service-account-jwt" ||
			r.Form.Get("RoleArn") != "arn:aws:iam::123456789012:role/holoproxy" {
			w.WriteHeader(http.StatusForbidden)
			io.WriteString(w, `<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error><Type>Sender</Type><Code>AccessDenied</Code><Message>Not authorized to perform sts:AssumeRoleWithWebIdentity</Message></Error></ErrorResponse>`)
			return
		}
		fmt.Fprintf(w, `<AssumeRoleWithWebIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
<AssumeRoleWithWebIdentityResult><Credentials><AccessKeyId>%s</AccessKeyId><SecretAccessKey>%s</SecretAccessKey><SessionToken></SessionToken><Expiration>%s</Expiration></Credentials></AssumeRoleWithWebIdentityResult>
</AssumeRoleWithWebIdentityResponse>`, srv.AccessKey, srv.SecretKey, time.Now().Add(time.Hour).UTC().Format(time.RFC3339))
	}))
	t.Cleanup(sts.Close)
	t.Setenv("AWS_WEB_IDENTITY_TOKEN_FILE", tokenFile)
	t.Setenv("AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/holoproxy")
	t.Setenv("AWS_ENDPOINT_URL_STS", sts.URL)
	c, err := FindS3Credentials(context.Background())
	if err != nil || !strings.HasPrefix(c.Source, "web identity") {
		t.Fatalf("FindS3Credentials = %q, %v", c.Source, err)
	}
	if err := useBucket(t, srv, c, "f.mod"); err != nil {
		t.Fatal(err)
	}
	t.Setenv("AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/other")
	if c, err := FindS3Credentials(context.Background()); err == nil || !strings.Contains(err.Error(), "web identity") {
		t.Fatalf("with a role STS refuses: %q, %v; want an error naming web identity", c.Source, err)
	}
}
