package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"time"

	"github.com/minio/minio-go/v7/pkg/credentials"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/pflag"

	"github.com/holoproxy/holoproxy/internal/netobs"
	"github.com/holoproxy/holoproxy/internal/store"
)

// sharedOptions are serve's flags of the shared cache tier.
type sharedOptions struct {
	url      string
	endpoint string
	region   string
}

func (o *sharedOptions) register(f *pflag.FlagSet) {
	f.StringVar(&o.url, "shared-cache", "", "an S3 bucket that replicas share, as s3://BUCKET[/PREFIX]: misses of the local cache are looked for there before upstream, and every .info, .mod and .zip filled is put there (credentials as the AWS SDKs find them: AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, the AWS shared credentials file, web identity, the container credentials endpoint, the instance metadata service)")
	f.StringVar(&o.endpoint, "s3-endpoint", "", "URL of the S3-compatible service of --shared-cache, e.g. https://s3.REGION.amazonaws.com or http://minio:9000 (default: $AWS_ENDPOINT_URL_S3, else $AWS_ENDPOINT_URL)")
	f.StringVar(&o.region, "s3-region", "", "region of the --shared-cache bucket (default: $AWS_REGION, else $AWS_DEFAULT_REGION, else us-east-1)")
}

// firstEnv returns the first of the environment variables names that is set and not empty.
func firstEnv(names ...string) string {
	for _, n := range names {
		if v := os.Getenv(n); v != "" {
			return v
		}
	}
	return ""
}

// check validates the flags without sending anything.
func (o *sharedOptions) check() error {
	if o.url == "" {
		return nil // --s3-endpoint alone is no error: its twin may be set for another command
	}
	if _, _, err := store.ParseS3URL(o.url); err != nil {
		return usagef("--shared-cache: %v", err)
	}
	if o.endpoint == "" {
		o.endpoint = firstEnv("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")
	}
	if o.endpoint == "" {
		return usagef("--shared-cache needs --s3-endpoint (or AWS_ENDPOINT_URL_S3): the URL of the S3 service")
	}
	if o.region == "" {
		o.region = firstEnv("AWS_REGION", "AWS_DEFAULT_REGION")
	}
	// The endpoint's form, before any credential service is asked.
	if _, err := store.NewS3Bucket(store.S3Config{URL: o.url, Endpoint: o.endpoint, Creds: noCreds}); err != nil {
		return usagef("%v", err)
	}
	return nil
}

// openShared puts the bucket of o under disk, when o names one. A bucket the service
// refuses (no such bucket, wrong credentials) stops serve before it listens; one that
// cannot be reached at start is logged, and tried again at each miss.
func openShared(ctx context.Context, o sharedOptions, nf upstreamFlags, disk *store.Disk, obs *observability, log *slog.Logger) (*store.Shared, error) {
	if o.url == "" {
		return nil, nil
	}
	// The upstreams' DNS cache and phase timeouts; its own pool, and no Samples: the
	// bucket is not an upstream of the chain and must not move its health or heatmaps.
	cfg := nf.transportConfig()
	cfg.Resolver = obs.resolver
	// No cap on connections: S3 takes many at once, and a request cut for want of one
	// would count as the bucket failing and pause it for 10 s.
	cfg.MaxConnsPerHost = 0
	t, err := netobs.NewTransport(cfg)
	if err != nil {
		return nil, fmt.Errorf("shared cache transport: %w", err)
	}
	b, source, err := o.newBucket(ctx, t)
	if err != nil {
		return nil, err
	}
	log.Info("shared cache", "bucket", b.String(), "endpoint", o.endpoint, "credentials", source)
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := b.Check(cctx); err != nil {
		// The service's refusals and a certificate this machine does not trust are
		// configuration, not weather: say so now rather than skip the bucket forever.
		var se *store.S3Error
		var cve *tls.CertificateVerificationError
		if errors.As(err, &se) || errors.As(err, &cve) {
			return nil, err
		}
		log.Warn("shared cache unreachable at start; serving on, trying it again at each miss", "bucket", b.String(), "endpoint", o.endpoint, "err", err)
	}
	return &store.Shared{Local: disk, Bucket: b, Logger: log}, nil
}

// newBucket returns the bucket o names (after check), its requests carried by t, and
// where its credentials came from. Credentials that are configured but cannot be had (a
// web identity STS refuses, say) are an error.
func (o sharedOptions) newBucket(ctx context.Context, t http.RoundTripper) (*store.S3Bucket, string, error) {
	creds, err := store.FindS3Credentials(ctx)
	if err != nil {
		return nil, "", fmt.Errorf("shared cache %s: %w", o.url, err)
	}
	b, err := store.NewS3Bucket(store.S3Config{URL: o.url, Endpoint: o.endpoint, Region: o.region,
		Creds: creds.Creds, Transport: t, UserAgent: userAgent()})
	if err != nil {
		return nil, "", usagef("%v", err)
	}
	return b, creds.Source, nil
}

// noCreds lets check build a bucket without looking for credentials.
var noCreds = credentials.NewStaticV4("", "", "")

// sharedCollector exports a Shared store's counts.
type sharedCollector struct {
	sh                          *store.Shared
	reads, writes, bytes, upDsc *prometheus.Desc
}

// registerShared exports sh's counts and the latency of its bucket's requests.
func registerShared(reg prometheus.Registerer, sh *store.Shared) error {
	latency := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "holoproxy_shared_cache_request_duration_seconds",
		Help:    "Requests to the shared bucket by operation (get: to the answer's header; put: to the end of the upload; delete) and result (ok, not_found, error).",
		Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
	}, []string{"op", "result"})
	if err := reg.Register(latency); err != nil {
		return err
	}
	sh.OnBucket = func(op string, d time.Duration, err error) {
		result := "ok"
		switch {
		case errors.Is(err, fs.ErrNotExist):
			result = "not_found"
		case err != nil:
			result = "error"
		}
		latency.WithLabelValues(op, result).Observe(d.Seconds())
	}
	return reg.Register(&sharedCollector{
		sh: sh,
		reads: prometheus.NewDesc("holoproxy_shared_cache_reads_total",
			"Reads the local cache missed, by what the shared bucket did: hit (copied to the local disk), miss, foreign (an object holoproxy did not write, ignored), corrupt (did not match its recorded SHA-256, ignored), refused (failed the checks of a fill: validation, checksum database), error, skipped (within the pause after a failure).",
			[]string{"result"}, nil),
		writes: prometheus.NewDesc("holoproxy_shared_cache_writes_total",
			"Files stored in the local cache and copied to the shared bucket (ok), failing to (error), or not copied within the pause after a failure (skipped).",
			[]string{"result"}, nil),
		bytes: prometheus.NewDesc("holoproxy_shared_cache_bytes_total",
			"Bytes copied from (down) and to (up) the shared bucket.", []string{"direction"}, nil),
		upDsc: prometheus.NewDesc("holoproxy_shared_cache_up",
			"1 while the shared bucket is used, 0 during the pause after it failed.", nil, nil),
	})
}

func (c *sharedCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.reads
	ch <- c.writes
	ch <- c.bytes
	ch <- c.upDsc
}

func (c *sharedCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.sh.Stats()
	counter := func(d *prometheus.Desc, v int64, label string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), label)
	}
	counter(c.reads, st.Hits, "hit")
	counter(c.reads, st.Misses, "miss")
	counter(c.reads, st.Foreign, "foreign")
	counter(c.reads, st.Corrupt, "corrupt")
	counter(c.reads, st.Refused, "refused")
	counter(c.reads, st.Errors, "error")
	counter(c.reads, st.SkippedReads, "skipped")
	counter(c.writes, st.Uploads, "ok")
	counter(c.writes, st.UploadErrors, "error")
	counter(c.writes, st.SkippedWrites, "skipped")
	counter(c.bytes, st.BytesDown, "down")
	counter(c.bytes, st.BytesUp, "up")
	up := 1.0
	if st.Down {
		up = 0
	}
	ch <- prometheus.MustNewConstMetric(c.upDsc, prometheus.GaugeValue, up)
}
