package lab_test

import (
	"context"
	"fmt"
	"log"
	"net/http"
	"time"

	"github.com/holoproxy/holoproxy/internal/lab"
)

// A lab outside a test (a bench/ program): two TLS origins behind slow links, DNS with a
// delay, the go command in a client host, and a Go server of this process inside a host.
// Tests use lab.New(t, opts) instead of Start and Close.
func Example() {
	l, err := lab.Start(lab.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer l.Close()
	client, _ := l.AddHost("client")
	a, _ := l.AddHost("proxy-a")
	b, _ := l.AddHost("proxy-b")
	dns, _ := l.DNS()
	dns.SetDelay("", 50*time.Millisecond)
	oa, _ := a.ServeOrigin(lab.OriginConfig{Tree: "testdata/tree", HTTP2: true,
		Faults: lab.Faults{NotFound: map[string]bool{"mods.test/g000": true}}})
	ob, _ := b.ServeOrigin(lab.OriginConfig{Tree: "testdata/tree"})
	a.SetLink(lab.Link{Delay: 40 * time.Millisecond})
	b.SetLink(lab.Link{Delay: 40 * time.Millisecond, Loss: 0.01})

	env, _ := l.GoEnv(oa.URL() + "," + ob.URL())
	cmd := client.Command(context.Background(), "go", "mod", "download", "all")
	cmd.Dir, cmd.Env = "testdata/app", env
	out, err := cmd.CombinedOutput()
	fmt.Println(string(out), err)

	// A Go server of this process, listening inside proxy-b's namespace.
	ln, _ := b.Listen("tcp", ":8080")
	go http.Serve(ln, http.NotFoundHandler())
	defer ln.Close()

	fmt.Print(l.Summary()) // DNS queries, connections, handshakes, requests per host
}
