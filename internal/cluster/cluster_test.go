package cluster

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// TestNodeConfig has nats-server read the configuration a node starts
// with: clustered with the other two, JetStream on, every write synced.
func TestNodeConfig(t *testing.T) {
	c := &Cluster{cfg: Config{Dir: t.TempDir(), Host: "127.0.0.1"}, Ports: PortsFrom(19000)}
	for i := range 3 {
		if err := c.writeNodeConfig(i); err != nil {
			t.Fatal(err)
		}
		opts, err := server.ProcessConfigFile(c.nodeConfig(i))
		if err != nil {
			t.Fatalf("node %d: %v", i, err)
		}
		if opts.ServerName != nodeName(i) || !opts.JetStream || !opts.SyncAlways {
			t.Errorf("node %d: server_name %q, jetstream %v, sync always %v", i, opts.ServerName, opts.JetStream, opts.SyncAlways)
		}
		if opts.Port != c.Ports.NATS[i] || opts.Cluster.Port != c.Ports.Routes[i] || opts.Cluster.Name != "amtsbote" || len(opts.Routes) != 3 {
			t.Errorf("node %d: port %d, cluster %s:%d, %d routes", i, opts.Port, opts.Cluster.Name, opts.Cluster.Port, len(opts.Routes))
		}
	}
}

func TestPortsDistinct(t *testing.T) {
	p := PortsFrom(19000)
	all := append(append(append([]int{p.Front, p.Subscriber}, p.NATS[:]...), p.Routes[:]...), p.Monitor[:]...)
	for _, n := range p.Roles {
		all = append(all, n)
	}
	slices.Sort(all)
	if len(slices.Compact(slices.Clone(all))) != len(all) || len(p.Roles) != len(roleList) {
		t.Fatalf("ports overlap: %v", all)
	}
}

// TestFrontSkipsDeadGateway sends requests through the load balancer
// while one of its two gateways refuses connections: every one is answered
// by the other, with its body, also after the dead one's pause ran out.
func TestFrontSkipsDeadGateway(t *testing.T) {
	alive := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "alive %s %s", r.URL.Path, body)
	}))
	defer alive.Close()
	dead := httptest.NewServer(http.NotFoundHandler())
	deadURL := dead.URL
	dead.Close()

	f, err := startFront("127.0.0.1:0", []string{deadURL, alive.URL})
	if err != nil {
		t.Fatal(err)
	}
	defer f.close()
	ln := httptest.NewServer(f)
	defer ln.Close()

	bad := 0
	for i := range 10 {
		if i == 5 {
			time.Sleep(3100 * time.Millisecond) // the dead gateway is asked again
		}
		resp, err := http.Post(ln.URL+"/v1/x", "text/plain", strings.NewReader("antrag"))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		switch resp.StatusCode {
		case http.StatusOK:
			if string(body) != "alive /v1/x antrag" {
				t.Errorf("request %d: %q", i, body)
			}
		case http.StatusBadGateway:
			bad++
			if resp.Header.Get("Retry-After") == "" {
				t.Errorf("502 without Retry-After")
			}
		default:
			t.Errorf("request %d: %s", i, resp.Status)
		}
	}
	if bad > 0 {
		t.Errorf("%d answers 502; a refused connection should go to the other gateway", bad)
	}
}
