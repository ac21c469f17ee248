package lab

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"
)

// IMDS is a cloud instance metadata service (EC2's, version 2: a session token first)
// on loopback, handing out the temporary credentials of one instance role. Point
// AWS_EC2_METADATA_SERVICE_ENDPOINT at URL (and clear AWS_EC2_METADATA_DISABLED).
type IMDS struct {
	URL     string
	fetches atomic.Int64
}

// IMDSRole is the name of the role an IMDS lists.
const IMDSRole = "holoproxy-cache"

// StartIMDS starts an IMDS whose role's credentials are key and secret, each document
// valid for ttl from when it is served, and stops it at the end of tb.
func StartIMDS(tb testing.TB, key, secret string, ttl time.Duration) *IMDS {
	tb.Helper()
	f := &IMDS{}
	const token = "imds-session-token"
	mux := http.NewServeMux()
	mux.HandleFunc("PUT /latest/api/token", func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-aws-ec2-metadata-token-ttl-seconds") == "" {
			http.Error(w, "no TTL", http.StatusBadRequest)
			return
		}
		io.WriteString(w, token)
	})
	authorized := func(w http.ResponseWriter, r *http.Request) bool {
		if r.Header.Get("X-aws-ec2-metadata-token") != token {
			http.Error(w, "IMDSv2 token required", http.StatusUnauthorized)
			return false
		}
		return true
	}
	mux.HandleFunc("GET /latest/meta-data/iam/security-credentials/", func(w http.ResponseWriter, r *http.Request) {
		if authorized(w, r) {
			io.WriteString(w, IMDSRole+"\n")
		}
	})
	mux.HandleFunc("GET /latest/meta-data/iam/security-credentials/"+IMDSRole, func(w http.ResponseWriter, r *http.Request) {
		if !authorized(w, r) {
			return
		}
		f.fetches.Add(1)
		now := time.Now().UTC()
		json.NewEncoder(w).Encode(map[string]any{
			"Code": "Success", "Type": "AWS-HMAC", "AccessKeyId": key, "SecretAccessKey": secret, "Token": "",
			"Expiration": now.Add(ttl).Format(time.RFC3339), "LastUpdated": now.Format(time.RFC3339),
		})
	})
	srv := httptest.NewServer(mux)
	tb.Cleanup(srv.Close)
	f.URL = srv.URL
	return f
}

// Fetches returns how many credential documents it served.
func (f *IMDS) Fetches() int64 { return f.fetches.Load() }
