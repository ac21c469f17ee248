package store

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/minio/minio-go/v7/pkg/credentials"
)

// S3Credentials are the credentials a bucket signs with and where they came from.
type S3Credentials struct {
	Creds *credentials.Credentials
	// Source says where they came from, for the start log: "environment
	// (AWS_ACCESS_KEY_ID)", "instance metadata", "anonymous", ...
	Source string
}

// FindS3Credentials finds the bucket's credentials the way the AWS SDKs' default chain
// does, in its order, and says which it found:
//
//  1. AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN);
//  2. MINIO_ROOT_USER / MINIO_ROOT_PASSWORD (or MINIO_ACCESS_KEY / MINIO_SECRET_KEY);
//  3. the AWS shared credentials file (AWS_SHARED_CREDENTIALS_FILE, AWS_PROFILE);
//  4. web identity, when AWS_WEB_IDENTITY_TOKEN_FILE is set (Kubernetes service
//     accounts, EKS "IRSA"): the token is exchanged for a role's temporary credentials
//     at STS (AWS_ENDPOINT_URL_STS, else the region's STS);
//  5. the container credentials endpoint, when AWS_CONTAINER_CREDENTIALS_RELATIVE_URI or
//     _FULL_URI is set (ECS tasks, EKS Pod Identity);
//  6. the instance metadata service (EC2 instance roles, IMDSv2 then v1), unless
//     AWS_EC2_METADATA_DISABLED=true; AWS_EC2_METADATA_SERVICE_ENDPOINT moves it.
//
// Temporary credentials (4-6) are renewed before they expire, from the same source.
// Sources 4 and 5 are configured explicitly, so their failure is an error; the instance
// metadata service is only probed, and a machine without one (or without a role) goes
// on anonymous, as does one with no source at all. No source sends anything unless the
// earlier ones found nothing.
func FindS3Credentials(ctx context.Context) (S3Credentials, error) {
	getenv := os.Getenv
	static := []struct {
		p    credentials.Provider
		name string
	}{
		{&credentials.EnvAWS{}, "environment (AWS_ACCESS_KEY_ID)"},
		{&credentials.EnvMinio{}, "environment (MINIO_ROOT_USER or MINIO_ACCESS_KEY)"},
		{&credentials.FileAWSCredentials{}, "AWS shared credentials file"},
	}
	for _, s := range static {
		if v, err := s.p.Retrieve(); err == nil && v.AccessKeyID != "" && v.SecretAccessKey != "" {
			if s.name == "AWS shared credentials file" {
				s.name = sharedFileSource(getenv)
			}
			return S3Credentials{Creds: credentials.New(s.p), Source: s.name}, nil
		}
	}

	var (
		iam    *credentials.IAM
		source string
		probe  bool // a failure means "not here", not an error
	)
	switch {
	case getenv("AWS_WEB_IDENTITY_TOKEN_FILE") != "":
		// STS is a public service: reached through the egress proxy when there is one.
		iam = &credentials.IAM{Client: credentialClient(http.ProxyFromEnvironment, 10*time.Second), Endpoint: getenv("AWS_ENDPOINT_URL_STS")}
		source = "web identity (AWS_WEB_IDENTITY_TOKEN_FILE, role " + getenv("AWS_ROLE_ARN") + ")"
	case getenv("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI") != "" || getenv("AWS_CONTAINER_CREDENTIALS_FULL_URI") != "":
		iam = &credentials.IAM{Client: credentialClient(nil, 5*time.Second)}
		source = "container credentials endpoint"
	case !strings.EqualFold(getenv("AWS_EC2_METADATA_DISABLED"), "true"):
		// Link-local: never through a proxy, and quick to give up on a machine that has
		// no such service (the SDKs allow it a second).
		iam = &credentials.IAM{Client: credentialClient(nil, 2*time.Second), Endpoint: getenv("AWS_EC2_METADATA_SERVICE_ENDPOINT")}
		source, probe = "instance metadata", true
	}
	if iam != nil {
		creds := credentials.New(iam)
		cctx, cancel := context.WithTimeout(ctx, 3*iam.Client.Timeout)
		v, err := creds.GetWithContext(&credentials.CredContext{Client: iam.Client, Context: cctx})
		cancel()
		if err == nil && (v.AccessKeyID == "" || v.SecretAccessKey == "") {
			err = errors.New("the answer has no access key")
		}
		switch {
		case err == nil:
			return S3Credentials{Creds: creds, Source: source}, nil
		case !probe:
			return S3Credentials{}, fmt.Errorf("S3 credentials from the %s: %v", source, err)
		}
	}
	return S3Credentials{Creds: credentials.New(&credentials.Static{Value: credentials.Value{SignerType: credentials.SignatureAnonymous}}),
		Source: "anonymous (no credentials found)"}, nil
}

// sharedFileSource names the shared credentials file and profile in use.
func sharedFileSource(getenv func(string) string) string {
	file := getenv("AWS_SHARED_CREDENTIALS_FILE")
	if file == "" {
		file = "~/.aws/credentials"
	}
	profile := getenv("AWS_PROFILE")
	if profile == "" {
		profile = "default"
	}
	return fmt.Sprintf("AWS shared credentials file (%s, profile %s)", file, profile)
}

// credentialClient is the HTTP client of a credential service: bounded in every phase.
// Renewals later use it too, with these bounds.
func credentialClient(proxy func(*http.Request) (*url.URL, error), timeout time.Duration) *http.Client {
	return &http.Client{
		Timeout: timeout,
		Transport: &http.Transport{
			Proxy:                 proxy,
			DialContext:           (&net.Dialer{Timeout: timeout / 2}).DialContext,
			TLSHandshakeTimeout:   timeout / 2,
			ResponseHeaderTimeout: timeout,
			IdleConnTimeout:       30 * time.Second,
			MaxIdleConnsPerHost:   1,
		},
	}
}
