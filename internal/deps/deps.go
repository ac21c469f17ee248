package deps

import (
	_ "github.com/chromedp/chromedp"
	_ "github.com/miekg/dns"
	_ "github.com/prometheus/client_golang/prometheus"
	_ "github.com/spf13/cobra"
	_ "golang.org/x/exp/trace"
	_ "golang.org/x/mod/module"
	_ "golang.org/x/mod/sumdb"
	_ "golang.org/x/mod/zip"
	_ "golang.org/x/net/http2"
	_ "golang.org/x/sync/singleflight"
)
