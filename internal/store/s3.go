package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"strings"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"github.com/minio/minio-go/v7/pkg/s3utils"
)

// digestMeta is the user metadata under which holoproxy records an object's SHA-256.
const digestMeta = "Holoproxy-Sha256"

// S3Config configures NewS3Bucket.
type S3Config struct {
	// URL names the bucket and the key prefix: s3://BUCKET or s3://BUCKET/PREFIX.
	// Required.
	URL string
	// Endpoint is the S3-compatible service's URL (http:// or https://, host and port,
	// no path). Required.
	Endpoint string
	// Region is the bucket's region (default us-east-1, which most S3-compatible servers
	// accept whatever they call their region).
	Region string
	// Creds are the credentials to sign with (default: the AWS environment variables,
	// then the MinIO ones, then the AWS shared credentials file; anonymous when none).
	// FindS3Credentials goes on to the roles of cloud machines, as serve does.
	Creds *credentials.Credentials
	// Transport carries the requests (default http.DefaultTransport).
	Transport http.RoundTripper
	// UserAgent names the application in the requests' User-Agent ("holoproxy/v1.2.3").
	UserAgent string
}

// S3Bucket is a Bucket in an S3-compatible object store (AWS S3, MinIO, Ceph RGW,
// SeaweedFS, Versity, cloud providers' S3 APIs). Objects are written with one PUT each,
// streamed from the file (a module zip is at most 500 MiB, well under S3's 5 GiB for one
// PUT), so an upload holds no more than a copy buffer in memory.
type S3Bucket struct {
	client *minio.Client
	bucket string
	prefix string // "" or ending in "/"
	name   string // s3://bucket/prefix, for logs
}

// ParseS3URL splits an s3://BUCKET[/PREFIX] URL into its bucket and its key prefix ("" or
// ending in "/").
func ParseS3URL(raw string) (bucket, prefix string, err error) {
	shown := redactUserInfo(raw) // credentials given in the URL stay out of errors
	u, err := url.Parse(raw)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // its message repeats the URL
		}
		return "", "", fmt.Errorf("shared cache %q: %v", shown, err)
	}
	if u.Scheme != "s3" || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return "", "", fmt.Errorf("shared cache %q: want s3://BUCKET or s3://BUCKET/PREFIX", shown)
	}
	if err := s3utils.CheckValidBucketNameStrict(u.Host); err != nil {
		return "", "", fmt.Errorf("shared cache %q: bucket name %q: %v", shown, u.Host, err)
	}
	prefix = strings.Trim(u.Path, "/")
	if prefix != "" {
		if err := CheckKey(prefix); err != nil {
			return "", "", fmt.Errorf("shared cache %q: prefix %q: want slash-separated names without . or .. elements", shown, prefix)
		}
		prefix += "/"
	}
	return u.Host, prefix, nil
}

// redactUserInfo returns raw with the user info of its URL, if any, replaced by "xxxxx".
func redactUserInfo(raw string) string {
	scheme, rest, ok := strings.Cut(raw, "://")
	if !ok {
		return raw
	}
	authority, path := rest, ""
	if i := strings.IndexAny(rest, "/?#"); i >= 0 {
		authority, path = rest[:i], rest[i:]
	}
	if i := strings.LastIndexByte(authority, '@'); i >= 0 {
		return scheme + "://xxxxx@" + authority[i+1:] + path
	}
	return raw
}

// NewS3Bucket returns the bucket cfg names. It sends no request.
func NewS3Bucket(cfg S3Config) (*S3Bucket, error) {
	bucket, prefix, err := ParseS3URL(cfg.URL)
	if err != nil {
		return nil, err
	}
	ep, err := url.Parse(cfg.Endpoint)
	if err != nil || (ep.Scheme != "http" && ep.Scheme != "https") || ep.Host == "" || strings.Trim(ep.Path, "/") != "" || ep.User != nil {
		return nil, fmt.Errorf("S3 endpoint %q: want http://HOST[:PORT] or https://HOST[:PORT]", cfg.Endpoint)
	}
	if cfg.Region == "" {
		cfg.Region = "us-east-1"
	}
	if cfg.Creds == nil {
		cfg.Creds = credentials.NewChainCredentials([]credentials.Provider{
			&credentials.EnvAWS{}, &credentials.EnvMinio{}, &credentials.FileAWSCredentials{},
		})
	}
	if cfg.Transport == nil {
		cfg.Transport = http.DefaultTransport
	}
	c, err := minio.New(ep.Host, &minio.Options{
		Creds:     cfg.Creds,
		Secure:    ep.Scheme == "https",
		Transport: cfg.Transport,
		Region:    cfg.Region,
		// The caller's timeouts and backoff decide; the library's ten retries with
		// backoff would hold a client's request long past them.
		MaxRetries: 1,
	})
	if err != nil {
		return nil, fmt.Errorf("S3 endpoint %q: %w", cfg.Endpoint, err)
	}
	if app, ver, ok := strings.Cut(cfg.UserAgent, "/"); ok {
		c.SetAppInfo(app, ver)
	}
	return &S3Bucket{client: c, bucket: bucket, prefix: prefix, name: "s3://" + bucket + "/" + prefix}, nil
}

// String implements Bucket.
func (b *S3Bucket) String() string { return b.name }

// Check asks whether the bucket exists and the credentials may read it: a bucket that
// cannot be used at all is better found at start than at the first miss. The service's
// refusals (a missing bucket included) are *S3Error; others are failures to reach it.
func (b *S3Bucket) Check(ctx context.Context) error {
	ok, err := b.client.BucketExists(ctx, b.bucket)
	if err != nil {
		return fmt.Errorf("shared cache %s: %w", b.name, s3Error(err))
	}
	if !ok {
		return fmt.Errorf("shared cache %s: %w", b.name, &S3Error{Code: "NoSuchBucket", StatusCode: http.StatusNotFound,
			Message: fmt.Sprintf("the bucket %q does not exist", b.bucket)})
	}
	return nil
}

// S3Error is an error answer of the S3 service (not a failure to reach it).
type S3Error struct {
	Code       string // the service's error code: AccessDenied, NoSuchBucket, ...
	StatusCode int
	Message    string
}

func (e *S3Error) Error() string {
	if e.Message == "" || e.Message == e.Code {
		// An answer without a body (to a HEAD): minio-go makes a code of the status line.
		return fmt.Sprintf("HTTP %d: %s", e.StatusCode, e.Code)
	}
	return fmt.Sprintf("%s (HTTP %d): %s", e.Code, e.StatusCode, e.Message)
}

// s3Error turns a not-found answer into an error satisfying errors.Is(err,
// fs.ErrNotExist), and other answers of the service into an *S3Error.
func s3Error(err error) error {
	resp := minio.ToErrorResponse(err)
	switch {
	case resp.Code == "NoSuchKey" || (resp.StatusCode == http.StatusNotFound && resp.Code != "NoSuchBucket"):
		return fmt.Errorf("%w: %v", fs.ErrNotExist, err)
	case resp.Code != "":
		return &S3Error{Code: resp.Code, StatusCode: resp.StatusCode, Message: resp.Message}
	}
	return err
}

func (b *S3Bucket) object(key string) (string, error) {
	if err := CheckKey(key); err != nil {
		return "", err
	}
	return b.prefix + key, nil
}

func objectOf(info minio.ObjectInfo) Object {
	return Object{Size: info.Size, ModTime: info.LastModified, SHA256: info.Metadata.Get("X-Amz-Meta-" + digestMeta)}
}

// Get implements Bucket.
func (b *S3Bucket) Get(ctx context.Context, key string) (io.ReadCloser, Object, error) {
	name, err := b.object(key)
	if err != nil {
		return nil, Object{}, err
	}
	// Core's GetObject is one GET; Client's, read after a Stat, is a HEAD and then a GET.
	body, info, _, err := minio.Core{Client: b.client}.GetObject(ctx, b.bucket, name, minio.GetObjectOptions{})
	if err != nil {
		return nil, Object{}, s3Error(err)
	}
	return body, objectOf(info), nil
}

// Stat describes the object under key, with Get's errors.
func (b *S3Bucket) Stat(ctx context.Context, key string) (Object, error) {
	name, err := b.object(key)
	if err != nil {
		return Object{}, err
	}
	info, err := b.client.StatObject(ctx, b.bucket, name, minio.StatObjectOptions{})
	if err != nil {
		return Object{}, s3Error(err)
	}
	return objectOf(info), nil
}

// Put implements Bucket.
func (b *S3Bucket) Put(ctx context.Context, key string, r io.Reader, size int64, sum string) error {
	name, err := b.object(key)
	if err != nil {
		return err
	}
	_, err = b.client.PutObject(ctx, b.bucket, name, r, size, minio.PutObjectOptions{
		UserMetadata:     map[string]string{digestMeta: sum},
		ContentType:      contentType(key),
		DisableMultipart: true,
	})
	if err != nil {
		return s3Error(err)
	}
	return nil
}

// contentType is the type a GOPROXY server gives the file under key.
func contentType(key string) string {
	switch {
	case strings.HasSuffix(key, ".zip"):
		return "application/zip"
	case strings.HasSuffix(key, ".info"), strings.HasSuffix(key, "/@latest"):
		return "application/json"
	}
	return "text/plain; charset=utf-8"
}

// Delete implements Bucket.
func (b *S3Bucket) Delete(ctx context.Context, key string) error {
	name, err := b.object(key)
	if err != nil {
		return err
	}
	if err := b.client.RemoveObject(ctx, b.bucket, name, minio.RemoveObjectOptions{}); err != nil {
		if err := s3Error(err); !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	return nil
}

// List calls fn for every object whose key starts with prefix, in lexical order, with what
// a listing tells of it (no SHA256: listings carry no user metadata).
func (b *S3Bucket) List(ctx context.Context, prefix string, fn func(key string, obj Object) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // ends the listing goroutine when fn stops early
	for info := range b.client.ListObjects(ctx, b.bucket, minio.ListObjectsOptions{Prefix: b.prefix + prefix, Recursive: true}) {
		if info.Err != nil {
			return s3Error(info.Err)
		}
		key := strings.TrimPrefix(info.Key, b.prefix)
		if CheckKey(key) != nil {
			continue // not a key holoproxy writes
		}
		if err := fn(key, Object{Size: info.Size, ModTime: info.LastModified}); err != nil {
			return err
		}
	}
	return nil
}
