package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"gopkg.in/yaml.v3"
)

// The failover test runs the production topology of deploy/k8s on 127.0.0.1: a 3-node JetStream cluster of real
// nats-server processes, the streams of deploy/k8s/nats.yaml (replicas 3, created by the test as the Job would), and a
// sidecar with the three URLs and manage_streams false. It kills servers under load and checks what an acknowledgement
// promises: every 2xx event is stored, and an open SSE stream delivers each of them exactly once, in order.
//
// One node is down at a time: the killed node is restarted and has caught up before the next kill, so the R3 streams
// always keep their quorum (2 of 3). Killing a second node while the first is down would leave 1 of 3, and JetStream
// rightly stops acknowledging then.
//
// The machine this runs on may be small (2 cores for three servers, the sidecar and the test): every wait polls with a
// generous deadline, and the figures are logged rather than held to tight bounds.

// streamsManifest holds the stream definitions the deployment creates (the ConfigMap flovyn-streams).
const streamsManifest = "../deploy/k8s/nats.yaml"

// clusterNode is one nats-server of the test cluster. Its ports and store stay the same across restarts.
type clusterNode struct {
	name                    string
	port, clusterPort, http int
	conf                    string
	proc                    *proc
	up                      bool
}

// testCluster is a JetStream cluster of nats-server processes on 127.0.0.1.
type testCluster struct {
	t     testing.TB
	bin   string
	nodes []*clusterNode
}

// startCluster writes a configuration for each of n servers (routes to the others) and starts them all.
func startCluster(t testing.TB, bin string, n int) *testCluster {
	t.Helper()
	c := &testCluster{t: t, bin: bin}
	ports := distinctPorts(t, 3*n)
	for i := range n {
		c.nodes = append(c.nodes, &clusterNode{name: fmt.Sprintf("n%d", i), port: ports[3*i],
			clusterPort: ports[3*i+1], http: ports[3*i+2]})
	}
	for i, nd := range c.nodes {
		var routes []string
		for j, o := range c.nodes {
			if j != i {
				routes = append(routes, fmt.Sprintf("nats-route://127.0.0.1:%d", o.clusterPort))
			}
		}
		dir := t.TempDir()
		conf := fmt.Sprintf(`server_name: %s
listen: 127.0.0.1:%d
http: 127.0.0.1:%d
jetstream {
  store_dir: %q
  max_memory_store: 64MB
  max_file_store: 1GB
}
cluster {
  name: eh-e2e
  listen: 127.0.0.1:%d
  routes: [%s]
}
`, nd.name, nd.port, nd.http, filepath.Join(dir, "js"), nd.clusterPort, strings.Join(routes, ", "))
		nd.conf = filepath.Join(dir, "nats-server.conf")
		if err := os.WriteFile(nd.conf, []byte(conf), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for i := range c.nodes {
		c.start(i)
	}
	return c
}

// distinctPorts returns n different free ports (freePort, asked again, may give a port it gave before).
func distinctPorts(t testing.TB, n int) []int {
	t.Helper()
	var ports []int
	for len(ports) < n {
		if p := freePort(t); !slices.Contains(ports, p) {
			ports = append(ports, p)
		}
	}
	return ports
}

// start starts node i (again) and waits until it accepts connections.
func (c *testCluster) start(i int) {
	c.t.Helper()
	nd := c.nodes[i]
	nd.proc = start(c.t, "nats-server "+nd.name, c.bin, "-c", nd.conf)
	nd.up = true
	waitFor(c.t, 30*time.Second, func() bool {
		conn, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", nd.port), 200*time.Millisecond)
		if err == nil {
			conn.Close()
		}
		return err == nil
	}, "nats-server %s on port %d", nd.name, nd.port)
}

// kill sends SIGKILL to node i and waits for it to exit.
func (c *testCluster) kill(i int) {
	c.t.Helper()
	nd := c.nodes[i]
	nd.proc.signal(syscall.SIGKILL)
	nd.proc.wait(c.t, 10*time.Second)
	nd.up = false
}

// urls returns the client URLs of every node.
func (c *testCluster) urls() []string {
	var urls []string
	for _, nd := range c.nodes {
		urls = append(urls, fmt.Sprintf("nats://127.0.0.1:%d", nd.port))
	}
	return urls
}

// index returns the node named name, or -1.
func (c *testCluster) index(name string) int {
	return slices.IndexFunc(c.nodes, func(nd *clusterNode) bool { return nd.name == name })
}

var monitorClient = &http.Client{Timeout: 2 * time.Second}

// monitor GETs a monitoring endpoint of node i and decodes its JSON into v (when not nil); it returns the status.
func (c *testCluster) monitor(i int, path string, v any) (int, error) {
	resp, err := monitorClient.Get(fmt.Sprintf("http://127.0.0.1:%d%s", c.nodes[i].http, path))
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, err
	}
	if v != nil {
		if err := json.Unmarshal(body, v); err != nil {
			return resp.StatusCode, fmt.Errorf("%s: %w: %s", path, err, body)
		}
	}
	return resp.StatusCode, nil
}

// healthy reports whether every running node answers /healthz with 200: part of the cluster, its JetStream meta
// state and every stream and consumer it holds current (caught up).
func (c *testCluster) healthy() bool {
	for i, nd := range c.nodes {
		if !nd.up {
			return false
		}
		if code, err := c.monitor(i, "/healthz", nil); err != nil || code != http.StatusOK {
			return false
		}
	}
	return true
}

// connzConn is a client connection as /connz lists it.
type connzConn struct {
	Name string `json:"name"`
}

// clientNode returns the node where a client connection named name is, once exactly one node has it.
func (c *testCluster) clientNode(name string) (int, bool) {
	found := -1
	for i, nd := range c.nodes {
		if !nd.up {
			continue
		}
		var connz struct {
			Connections []connzConn `json:"connections"`
		}
		if _, err := c.monitor(i, "/connz?limit=1024", &connz); err != nil {
			return -1, false
		}
		if slices.ContainsFunc(connz.Connections, func(x connzConn) bool { return x.Name == name }) {
			if found >= 0 {
				return -1, false
			}
			found = i
		}
	}
	return found, found >= 0
}

// deployedStreams reads the stream definitions of the deployment (the ConfigMap flovyn-streams of
// deploy/k8s/nats.yaml), sorted by name.
func deployedStreams(t testing.TB) []jetstream.StreamConfig {
	t.Helper()
	data, err := os.ReadFile(streamsManifest)
	if err != nil {
		t.Fatal(err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var out []jetstream.StreamConfig
	for {
		var doc struct {
			Kind     string `yaml:"kind"`
			Metadata struct {
				Name string `yaml:"name"`
			} `yaml:"metadata"`
			Data map[string]string `yaml:"data"`
		}
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("%s: %v", streamsManifest, err)
		}
		if doc.Kind != "ConfigMap" || doc.Metadata.Name != "flovyn-streams" {
			continue
		}
		for key, text := range doc.Data {
			var sc jetstream.StreamConfig
			if err := json.Unmarshal([]byte(text), &sc); err != nil {
				t.Fatalf("%s: flovyn-streams %s: %v", streamsManifest, key, err)
			}
			out = append(out, sc)
		}
	}
	if len(out) != 3 {
		t.Fatalf("%s: %d stream definitions in the ConfigMap flovyn-streams; want 3", streamsManifest, len(out))
	}
	slices.SortFunc(out, func(a, b jetstream.StreamConfig) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// streamsCurrent reports whether each stream has a leader and every other replica online and current.
func streamsCurrent(js jetstream.JetStream, names []string, replicas int) bool {
	for _, name := range names {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		s, err := js.Stream(ctx, name)
		var info *jetstream.StreamInfo
		if err == nil {
			info, err = s.Info(ctx)
		}
		cancel()
		if err != nil || info.Cluster == nil || info.Cluster.Leader == "" || len(info.Cluster.Replicas) != replicas-1 {
			return false
		}
		for _, p := range info.Cluster.Replicas {
			if !p.Current || p.Offline {
				return false
			}
		}
	}
	return true
}

// streamLeader returns the server leading a stream, once there is one.
func streamLeader(js jetstream.JetStream, name string) (string, bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, name)
	if err != nil {
		return "", false
	}
	info, err := s.Info(ctx)
	if err != nil || info.Cluster == nil || info.Cluster.Leader == "" {
		return "", false
	}
	return info.Cluster.Leader, true
}

// connected reports whether the collector has a stream open (its response headers arrived).
func (c *collector) connected() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cur != nil
}

// lazy is a value formatted only when printed (waitFor formats its message when it fails).
type lazy func() string

func (l lazy) String() string { return l() }

// killRecord is what one kill of a server did.
type killRecord struct {
	what       string        // which node was killed, and why that one
	killed     time.Time     // when
	leaderOnly bool          // a stream leader that was not the sidecar's server: its connection stayed up
	recovered  time.Duration // from the kill to the first acknowledgement of a publish started after it
	failed     int           // publishes that failed meanwhile
	rejoined   time.Duration // from the restart to the node being current again
}

// soakDuration is how long TestClusterFailover goes on killing servers: EVENTHOOK_SOAK (a Go duration, e.g. 5m), or
// zero for one round (two kills). A round takes about 15 s; give go test a -timeout above the soak.
func soakDuration(t testing.TB) time.Duration {
	s := os.Getenv("EVENTHOOK_SOAK")
	if s == "" {
		return 0
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		t.Fatalf("EVENTHOOK_SOAK=%q: %v", s, err)
	}
	return d
}

// TestClusterFailover runs a sidecar against a 3-node JetStream cluster with R3 streams and kills, under a steady
// publish load, first the server the sidecar is connected to and then the leader of FLOVYN_EVENTS (each restarted and
// caught up before the next kill). Publishing resumes after each kill, every acknowledged event is in the stream, and
// an SSE stream that was open all along delivers each acknowledged event exactly once, in publish order, without a
// gap. EVENTHOOK_SOAK=5m repeats the kills for that long.
func TestClusterFailover(t *testing.T) {
	eh, ns := binaries(t)
	soak := soakDuration(t)
	began := time.Now()
	cluster := startCluster(t, ns, 3)
	streams := deployedStreams(t)
	var names []string
	for _, sc := range streams {
		names = append(names, sc.Name)
	}

	// The test's own connection: it fails over like any client.
	nc, err := nats.Connect(strings.Join(cluster.urls(), ","), nats.Name("eventhook-e2e"), nats.MaxReconnects(-1),
		nats.ReconnectWait(100*time.Millisecond), nats.Timeout(2*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	// Ready: a meta leader answers account info, and every node says it is current.
	waitFor(t, 60*time.Second, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_, err := js.AccountInfo(ctx)
		return err == nil && cluster.healthy()
	}, "the JetStream cluster to elect its meta leader")
	clusterReady := time.Since(began)

	// The streams, as the deployment's Job creates them (the sidecar runs with manage_streams false and only checks
	// them). Creating an R3 stream can fail while the meta group is still settling its peers: try again.
	for _, sc := range streams {
		if sc.Replicas != 3 {
			t.Fatalf("%s: %d replicas in %s; the test wants the deployment's R3", sc.Name, sc.Replicas, streamsManifest)
		}
		var lastErr error
		waitFor(t, 30*time.Second, func() bool {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_, lastErr = js.CreateOrUpdateStream(ctx, sc)
			return lastErr == nil
		}, "stream %s to be created (last error: %v)", sc.Name, lazy(func() string { return fmt.Sprint(lastErr) }))
	}
	waitFor(t, 30*time.Second, func() bool { return streamsCurrent(js, names, 3) }, "the R3 streams to be current")

	dir := shortDir(t)
	var quoted []string
	for _, u := range cluster.urls() {
		quoted = append(quoted, fmt.Sprintf("%q", u))
	}
	side := startSidecar(t, eh, dir, fmt.Sprintf(`
backend: jetstream
http: {listen: "", unix_socket: %q}
nats: {urls: [%s], connect_timeout: 10s}
# streams_storage as the deployment's sidecars (workflow-worker.yaml): the Job's FLOVYN_STREAMS is on file storage.
jetstream: {replicas: 3, manage_streams: false, streams_storage: file}
sse: {heartbeat: 1s}
log: {level: debug}
`, dir+"/eh.sock", strings.Join(quoted, ", ")))

	tenant := uuid.New()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	col := &collector{}
	go col.run(ctx, t, side.client, "/events/stream", url.Values{"tenant_id": {tenant.String()}})
	// The tenant stream starts live: it must be open before the first publish, or that publish is not for it.
	waitFor(t, 10*time.Second, col.connected, "the SSE stream to open")
	pub := &publisher{}
	pubCtx, stopPub := context.WithCancel(ctx)
	pubDone := make(chan struct{})
	go func() { pub.run(pubCtx, side.client, tenant, 10*time.Millisecond); close(pubDone) }()
	defer func() { stopPub(); <-pubDone }()
	// Some traffic before the first kill, delivered too (so that a reconnecting collector has a cursor).
	waitFor(t, 20*time.Second, func() bool { a, _ := pub.counts(); return a >= 50 }, "50 acked publishes")
	waitFor(t, 20*time.Second, func() bool { ids, _, _, _ := col.snapshot(); return len(ids) >= 25 }, "25 delivered events")

	var kills []killRecord
	killAndRecover := func(i int, why string, leaderOnly bool) {
		t.Helper()
		acked0, failed0 := pub.counts()
		killed := time.Now()
		cluster.kill(i)
		// A publish in flight at the kill may still be acknowledged: resumed means one more after it.
		waitFor(t, 60*time.Second, func() bool { a, _ := pub.counts(); return a >= acked0+2 },
			"publishing to resume after killing %s", cluster.nodes[i].name)
		rec := killRecord{what: fmt.Sprintf("%s (%s)", cluster.nodes[i].name, why), killed: killed,
			leaderOnly: leaderOnly, recovered: time.Since(killed)}
		waitFor(t, 60*time.Second, func() bool { a, _ := pub.counts(); return a >= acked0+50 },
			"50 acked publishes after killing %s", cluster.nodes[i].name)
		_, failed1 := pub.counts()
		rec.failed = failed1 - failed0
		restarted := time.Now()
		cluster.start(i)
		waitFor(t, 90*time.Second, func() bool { return cluster.healthy() && streamsCurrent(js, names, 3) },
			"%s to rejoin and catch up", cluster.nodes[i].name)
		rec.rejoined = time.Since(restarted)
		kills = append(kills, rec)
		t.Logf("killed %s: publishing resumed after %v (%d publishes failed meanwhile); restarted, current again after %v",
			rec.what, rec.recovered.Round(time.Millisecond), rec.failed, rec.rejoined.Round(time.Millisecond))
	}
	for round := 0; round == 0 || time.Since(began) < soak; round++ {
		// The server the sidecar is connected to (its connection is named eventhook).
		var conn int
		waitFor(t, 30*time.Second, func() bool { var ok bool; conn, ok = cluster.clientNode("eventhook"); return ok },
			"the sidecar's connection to show on one server")
		why := "the sidecar's server"
		if l, ok := streamLeader(js, names[0]); ok && cluster.index(l) == conn {
			why += ", also the leader of " + names[0]
		}
		killAndRecover(conn, why, false)

		// The leader of FLOVYN_EVENTS, found from a surviving server.
		var leader string
		waitFor(t, 30*time.Second, func() bool { var ok bool; leader, ok = streamLeader(js, "FLOVYN_EVENTS"); return ok },
			"FLOVYN_EVENTS to have a leader")
		i := cluster.index(leader)
		if i < 0 {
			t.Fatalf("FLOVYN_EVENTS is led by %q, not a server of the test cluster", leader)
		}
		why = "the leader of FLOVYN_EVENTS"
		leaderOnly := true
		if c, ok := cluster.clientNode("eventhook"); ok && c == i {
			why += ", also the sidecar's server"
			leaderOnly = false
		}
		killAndRecover(i, why, leaderOnly)
	}
	waitFor(t, 20*time.Second, func() bool { a, _ := pub.counts(); return a >= len(kills)*50+100 }, "more acked publishes")
	stopPub()
	<-pubDone

	pub.mu.Lock()
	acked, failed, lastError, slowFail, noRetry := slices.Clone(pub.acked), pub.failed, pub.lastError, pub.slowFail, pub.noRetry
	spans := slices.Clone(pub.spans)
	pub.mu.Unlock()
	if noRetry > 0 {
		t.Errorf("%d 503 answers without Retry-After", noRetry)
	}
	// A stream leader election costs latency, not failures: no publish fails across the kill of a leader that was not
	// the sidecar's server (a kill of that server drops its connection, and a publish that arrives before it has
	// reconnected fails at once, as it must while NATS is unreachable).
	var straddled []time.Duration
	for _, k := range kills {
		if k.leaderOnly && k.failed > 0 {
			t.Errorf("killing %s failed %d publishes; want none: a leader election costs latency, not failures", k.what, k.failed)
		}
		for _, sp := range spans {
			if !sp.start.After(k.killed.Add(k.recovered)) && !sp.start.Add(sp.took).Before(k.killed) {
				straddled = append(straddled, sp.took)
			}
		}
	}
	slices.Sort(straddled)
	var p99 time.Duration
	if len(straddled) > 0 {
		p99 = straddled[min(len(straddled)-1, len(straddled)*99/100)]
	}

	// Every acknowledged event is in the stream: read the tenant's subjects with a consumer of the test's own.
	stored := readTenantEvents(t, js, tenant)
	count := map[string]int{}
	for _, id := range stored {
		count[id]++
	}
	found, dups := 0, 0
	for _, id := range acked {
		if count[id] > 0 {
			found++
		} else {
			t.Errorf("acked event %s is not in the stream", id)
		}
	}
	for id, n := range count {
		if n > 1 {
			dups += n - 1
			t.Errorf("event %s is stored %d times", id, n)
		}
	}

	// The SSE stream open since the start delivered each acked event exactly once, in order, without a gap.
	ackedSet := map[string]bool{}
	for _, id := range acked {
		ackedSet[id] = true
	}
	waitFor(t, 30*time.Second, func() bool {
		ids, _, _, _ := col.snapshot()
		n := 0
		for _, id := range ids {
			if ackedSet[id] {
				n++
			}
		}
		return n >= len(acked)
	}, "the SSE stream to deliver every acked event")
	ids, comments, reconnects, gaps := col.snapshot()
	checkExactlyOnce(t, acked, ids, true)
	if len(gaps) > 0 {
		t.Errorf("the SSE stream reported gaps %v; the JetStream backend must not lose events on a failover", gaps)
	}
	if reconnects > 0 {
		t.Errorf("the SSE stream ended %d times (the sidecar kept running: it should have stayed open)", reconnects)
	}

	// A replay from the store through the sidecar gives the stream's content, in the stream's order.
	replayed := storedIDs(t, side.client, tenant, atLeast(len(stored)))
	if !slices.Equal(replayed, stored) {
		t.Errorf("a replay from earliest gave %d events that differ from the %d in the stream", len(replayed), len(stored))
	}

	t.Logf("cluster of 3 ready in %v; %d kills in %v", clusterReady.Round(time.Millisecond), len(kills),
		time.Since(began).Round(time.Millisecond))
	for _, k := range kills {
		t.Logf("  kill %s: resumed after %v, %d failed publishes, rejoined after %v", k.what,
			k.recovered.Round(time.Millisecond), k.failed, k.rejoined.Round(time.Millisecond))
	}
	t.Logf("%d acked publishes straddled a kill: p99 %v", len(straddled), p99.Round(time.Millisecond))
	t.Logf("sent %d, acked %d, failed %d (the slowest in %v; last error: %q); in the stream: %d of the acked found, %d stored although "+
		"their publish failed, %d duplicates; SSE delivered %d (%d keep-alives, %d reconnects, %d gaps); %v resend rounds",
		len(acked)+failed, len(acked), failed, slowFail.Round(time.Millisecond), lastError, found, len(stored)-found-dups, dups, len(ids), comments,
		reconnects, len(gaps), side.metric(t, "eventhook_publish_resends_total"))
}

// readTenantEvents returns the ids of the tenant's lifecycle events stored in FLOVYN_EVENTS, in stream order.
func readTenantEvents(t testing.TB, js jetstream.JetStream, tenant uuid.UUID) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	subject := "flovyn.events." + tenant.String() + ".>"
	s, err := js.Stream(ctx, "FLOVYN_EVENTS")
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx, jetstream.WithSubjectFilter(subject))
	if err != nil {
		t.Fatal(err)
	}
	total := 0
	for _, n := range info.State.Subjects {
		total += int(n)
	}
	cons, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{FilterSubjects: []string{subject}})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for len(ids) < total {
		if ctx.Err() != nil {
			t.Fatalf("read %d of the tenant's %d stored events", len(ids), total)
		}
		batch, err := cons.Fetch(500, jetstream.FetchMaxWait(2*time.Second))
		if err != nil {
			continue
		}
		for msg := range batch.Messages() {
			var e struct {
				ID string `json:"id"`
			}
			if err := json.Unmarshal(msg.Data(), &e); err != nil {
				t.Fatalf("stored event %s: %v", msg.Subject(), err)
			}
			ids = append(ids, e.ID)
		}
	}
	return ids
}
