package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/flovyn/eventhook/sidecar/client"
	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// flovynStreams is FLOVYN_STREAMS as Flovyn's own server creates it: memory storage, a 1h max age.
var flovynStreams = jetstream.StreamConfig{Name: "FLOVYN_STREAMS", Subjects: []string{"flovyn.streams.workflow.>"},
	Storage: jetstream.MemoryStorage, MaxAge: time.Hour}

// sharedServer starts a nats-server process with JetStream and returns its URL and a JetStream client of "the other
// writer" (Flovyn's server) on it.
func sharedServer(t *testing.T, ns string) (string, jetstream.JetStream) {
	t.Helper()
	port := freePort(t)
	natsServer(t, ns, port, t.TempDir())
	u := fmt.Sprintf("nats://127.0.0.1:%d", port)
	nc, err := nats.Connect(u)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return u, js
}

func createStream(t *testing.T, js jetstream.JetStream, sc jetstream.StreamConfig) {
	t.Helper()
	if _, err := js.CreateStream(t.Context(), sc); err != nil {
		t.Fatalf("create stream %s: %v", sc.Name, err)
	}
}

// sharedConfig is a sidecar configuration on the nats-server at u, with extra jetstream settings, logging JSON.
func sharedConfig(dir, u, jetstreamExtra string) string {
	return fmt.Sprintf(`
backend: jetstream
http: {listen: "", unix_socket: %q}
nats: {urls: [%q], connect_timeout: 5s}
jetstream: {%s}
log: {level: info, format: json}
`, dir+"/eh.sock", u, jetstreamExtra)
}

// logRecords returns the JSON log records of a process whose msg is msg.
func logRecords(p *proc, msg string) []map[string]any {
	var out []map[string]any
	for _, line := range strings.Split(p.output(), "\n") {
		var rec map[string]any
		if json.Unmarshal([]byte(line), &rec) == nil && rec["msg"] == msg {
			out = append(out, rec)
		}
	}
	return out
}

// notApplied returns how many times the sidecar logged each setting of stream as not applied, and the last record.
func notApplied(p *proc, stream string) (map[string]int, map[string]map[string]any) {
	n, last := map[string]int{}, map[string]map[string]any{}
	for _, rec := range logRecords(p, "stream setting not applied") {
		if rec["stream"] == stream {
			s, _ := rec["setting"].(string)
			n[s]++
			last[s] = rec
		}
	}
	return n, last
}

// openSSE opens an SSE stream of the sidecar (closed with the test) and returns once its response headers arrived.
func openSSE(t *testing.T, client *client.Sidecar, path string, q url.Values, last string) *client.SSEReader {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	t.Cleanup(cancel)
	r, closer, err := client.Stream(ctx, path, q, last)
	if err != nil {
		t.Fatalf("open %s: %v", path, err)
	}
	t.Cleanup(func() { closer.Close() })
	return r
}

// frames reads n frames of an SSE stream (comments such as keep-alives are not frames).
func frames(t *testing.T, r *client.SSEReader, n int) []client.SSEEvent {
	t.Helper()
	var out []client.SSEEvent
	for len(out) < n {
		ev, err := r.Next()
		if err != nil {
			t.Fatalf("reading the SSE stream after %d frames %+v: %v", len(out), out, err)
		}
		out = append(out, ev)
	}
	return out
}

// TestBesideFlovynServer runs the sidecar on a NATS server where Flovyn's own server has already created
// FLOVYN_STREAMS on memory storage: with manage_streams true it adopts the stream as it is (storage and the owner's max
// age kept, what the configuration says otherwise logged once); with manage_streams false, next to streams an operator
// created, it verifies them and starts too. Either way stream events and lifecycle events published over the socket
// reach SSE subscribers and the stream is still on memory storage afterwards. A workflow subject purged by the other
// writer (as Flovyn's server does after a workflow ends) gives a resuming client an expired gap, then new events.
func TestBesideFlovynServer(t *testing.T) {
	eh, ns := binaries(t)
	for _, manage := range []bool{true, false} {
		t.Run(fmt.Sprintf("manage_streams=%v", manage), func(t *testing.T) {
			u, js := sharedServer(t, ns)
			createStream(t, js, flovynStreams)
			// The configuration asks for a longer max age than the owner's 1h; without manage_streams, also file storage.
			extra := "manage_streams: true, streams_max_age: 2h"
			wantNotApplied := map[string]string{"max_age": "1h0m0s"}
			if !manage {
				// The other two streams, as an operator creates them with the settings eventhook needs.
				for _, sc := range []jetstream.StreamConfig{
					{Name: "FLOVYN_EVENTS", Subjects: []string{"flovyn.events.>"}, Storage: jetstream.FileStorage,
						MaxAge: 168 * time.Hour, Duplicates: 2 * time.Minute, AllowDirect: true},
					{Name: "FLOVYN_EVENTS_INDEX", Subjects: []string{"flovyn.index.>"}, Storage: jetstream.FileStorage,
						MaxAge: 168 * time.Hour, Duplicates: 2 * time.Minute, AllowDirect: true},
				} {
					createStream(t, js, sc)
				}
				extra = "manage_streams: false, streams_max_age: 2h, streams_storage: file"
				wantNotApplied["storage"] = "memory"
			}
			dir := shortDir(t)
			side := startSidecar(t, eh, dir, sharedConfig(dir, u, extra))

			tenant, wf := uuid.New(), uuid.New()
			path := "/workflow-executions/" + wf.String() + "/stream"
			q := url.Values{"tenant_id": {tenant.String()}}
			tokOf := func(wf uuid.UUID, p string) {
				t.Helper()
				body := fmt.Sprintf(`{"workflowExecutionId":%q,"type":"TOKEN","payload":%q}`, wf, p)
				if _, err := side.client.PublishStreams(t.Context(), []byte(body), "", tenant.String()); err != nil {
					t.Fatalf("publish a stream event: %v", err)
				}
			}
			tok := func(p string) { t.Helper(); tokOf(wf, p) }
			// Another workflow's token first: the purge below then leaves the stream's first sequence where it is.
			tokOf(uuid.New(), "other")
			body := fmt.Sprintf(`{"tenant_id":%q,"workflow_execution_id":%q,"event_type":"workflow.started"}`, tenant, wf)
			if _, err := side.client.PublishEvent(t.Context(), []byte(body), ""); err != nil {
				t.Fatalf("publish a lifecycle event: %v", err)
			}
			tok("Hello")
			tok("world")
			got := frames(t, openSSE(t, side.client, path, q, ""), 3)
			if got[0].Event != "lifecycle" || !strings.Contains(got[0].Data, `"workflow.started"`) ||
				got[1].Event != "token" || got[1].Data != "Hello" || got[2].Data != "world" {
				t.Fatalf("frames %+v; want workflow.started, then the tokens Hello and world", got)
			}

			s, err := js.Stream(t.Context(), "FLOVYN_STREAMS")
			if err != nil {
				t.Fatal(err)
			}
			if info := s.CachedInfo(); info.Config.Storage != jetstream.MemoryStorage || info.Config.MaxAge != time.Hour ||
				info.State.Msgs != 3 {
				t.Errorf("FLOVYN_STREAMS storage %s, max age %v, %d messages; want memory, 1h (the owner's), the 3 tokens",
					info.Config.Storage, info.Config.MaxAge, info.State.Msgs)
			}
			count, recs := notApplied(side.proc, "FLOVYN_STREAMS")
			for setting, have := range wantNotApplied {
				if count[setting] != 1 || recs[setting]["have"] != have || recs[setting]["level"] != "WARN" {
					t.Errorf("setting %s of FLOVYN_STREAMS logged %d times (%v); want once, at WARN, with have %s",
						setting, count[setting], recs[setting], have)
				}
			}
			if !manage {
				return
			}

			// Flovyn's server purges the workflow's subject after its end. A client resuming after the first token
			// (on a sidecar that does not hold the workflow in memory: this one after a restart) gets an expired gap
			// instead of a silent hole, then new events.
			if err := s.Purge(t.Context(), jetstream.WithPurgeSubject("flovyn.streams.workflow."+wf.String())); err != nil {
				t.Fatal(err)
			}
			side.signal(syscall.SIGTERM)
			if code := side.wait(t, 20*time.Second); code != 0 {
				t.Fatalf("eventhook exited with %d after SIGTERM", code)
			}
			side = startSidecar(t, eh, dir, sharedConfig(dir, u, extra))
			r := openSSE(t, side.client, path, q, got[1].ID) // right after Hello
			tok("again")
			got = frames(t, r, 2)
			if got[0].Event != "gap" || got[0].Data != `{"reason":"expired","missed":null}` ||
				got[1].Event != "token" || got[1].Data != "again" {
				t.Fatalf("frames after resuming into the purged range %+v; want an expired gap, then the token again", got)
			}
		})
	}
}

// TestVerifyNamesMissingSubject: with manage_streams false, a stream that does not capture the subjects eventhook
// publishes and reads stops the start, with a message naming the stream, its subjects and the subject needed.
func TestVerifyNamesMissingSubject(t *testing.T) {
	eh, ns := binaries(t)
	u, js := sharedServer(t, ns)
	for _, sc := range []jetstream.StreamConfig{
		{Name: "FLOVYN_EVENTS", Subjects: []string{"flovyn.events.>"}, Duplicates: 2 * time.Minute},
		{Name: "FLOVYN_EVENTS_INDEX", Subjects: []string{"flovyn.index.>"}},
		{Name: "FLOVYN_STREAMS", Subjects: []string{"flovyn.streams.legacy.>"}, Storage: jetstream.MemoryStorage},
	} {
		createStream(t, js, sc)
	}
	dir := shortDir(t)
	cfgPath := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(cfgPath, []byte(sharedConfig(dir, u, "manage_streams: false")), 0o600); err != nil {
		t.Fatal(err)
	}
	p := start(t, "eventhook", eh, "serve", "-config", cfgPath)
	if code := p.wait(t, 30*time.Second); code == 0 {
		t.Fatalf("eventhook started over a stream without its subjects; output:\n%s", p.output())
	}
	stopped := logRecords(p, "eventhook stopped")
	if len(stopped) != 1 {
		t.Fatalf("%d \"eventhook stopped\" records; want 1:\n%s", len(stopped), p.output())
	}
	msg, _ := stopped[0]["err"].(string)
	for _, want := range []string{"stream FLOVYN_STREAMS", `["flovyn.streams.legacy.>"]`, "flovyn.streams.workflow.*"} {
		if !strings.Contains(msg, want) {
			t.Errorf("the start-up error %q does not name %s", msg, want)
		}
	}
}
