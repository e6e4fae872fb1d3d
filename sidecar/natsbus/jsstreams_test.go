package natsbus

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flovyn/eventhook/sidecar/bus"
	"github.com/flovyn/eventhook/sidecar/bus/bustest"
	"github.com/flovyn/eventhook/sidecar/event"
	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// logRecorder keeps what a JSON logger writes, for tests that check log records.
type logRecorder struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (r *logRecorder) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.buf.Write(p)
}

// records returns the records whose message is msg, each as its attributes.
func (r *logRecorder) records(t testing.TB, msg string) []map[string]any {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(r.buf.String()), "\n") {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		if rec["msg"] == msg {
			out = append(out, rec)
		}
	}
	return out
}

// notApplied returns the "stream setting not applied" records of a stream, by setting. It fails the test when a
// setting is logged more than once.
func (r *logRecorder) notApplied(t testing.TB, stream string) map[string]map[string]any {
	t.Helper()
	out := map[string]map[string]any{}
	for _, rec := range r.records(t, "stream setting not applied") {
		if rec["stream"] != stream {
			continue
		}
		setting := rec["setting"].(string)
		if out[setting] != nil {
			t.Errorf("stream %s setting %s logged twice: %v and %v", stream, setting, out[setting], rec)
		}
		out[setting] = rec
	}
	return out
}

// sharedNATS starts a NATS server with JetStream that a test shares between eventhook and another writer (as a cluster
// shared with Flovyn's server), and returns a configuration pointing the bus at it and the other writer's JetStream.
// The server outlives the buses of the test, so its memory streams do too.
func sharedNATS(t testing.TB) (*Options, jetstream.JetStream) {
	t.Helper()
	srv, err := StartEmbedded(ConnOptions{EmbeddedListen: "127.0.0.1:-1", StoreDir: t.TempDir()}, testLogger(nil, slog.LevelError))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		srv.Shutdown()
		srv.WaitForShutdown()
	})
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	cfg := &Options{Linger: -1}
	cfg.Conn.URLs = []string{srv.ClientURL()}
	return cfg, js
}

// openBus opens a JetStream bus on cfg that logs (JSON, debug) into the returned recorder.
func openBus(t testing.TB, cfg *Options) (*JetStream, *logRecorder, error) {
	t.Helper()
	rec := &logRecorder{}
	b, err := NewJetStream(t.Context(), *cfg, slog.New(slog.NewJSONHandler(rec, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if b != nil {
		t.Cleanup(func() { b.Close() })
	}
	return b, rec, err
}

// flovynStreams is FLOVYN_STREAMS as Flovyn's server creates it.
var flovynStreams = jetstream.StreamConfig{Name: "FLOVYN_STREAMS", Subjects: []string{"flovyn.streams.workflow.>"},
	Storage: jetstream.MemoryStorage, MaxAge: time.Hour}

func streamConfig(t testing.TB, js jetstream.JetStream, name string) jetstream.StreamConfig {
	t.Helper()
	s, err := js.Stream(t.Context(), name)
	if err != nil {
		t.Fatalf("stream %s: %v", name, err)
	}
	return s.CachedInfo().Config
}

// checkStreamWorks publishes a stream event and a lifecycle event through the bus and expects both at subscribers.
func checkStreamWorks(t testing.TB, b *JetStream) {
	t.Helper()
	tenant, wf := uuid.New(), uuid.New()
	st := bustest.SubscribeStream(t, b, tenant, wf.String(), bus.StartEarliest())
	evs := bustest.Subscribe(t, b, event.ForWorkflow(tenant, wf), bus.StartEarliest())
	bustest.PublishStream(t, b, bustest.Stream(tenant, wf.String(), "", 1, event.StreamToken, "hello"))
	bustest.PublishEvent(t, b, bustest.Event(tenant, "workflow.started").WithWorkflow(wf))
	if d := bustest.Next(t, st); d.Value == nil || d.Value.Payload != "hello" {
		t.Fatalf("stream delivery %+v; want the token hello", d)
	}
	bustest.ExpectNext(t, evs, "workflow.started")
}

// TestStreamsStorage: the generic streams stream is created with jetstream.streams_storage (memory by default), the
// lifecycle events and the index on file storage.
func TestStreamsStorage(t *testing.T) {
	for _, storage := range []string{"", "memory", "file"} {
		t.Run("storage="+storage, func(t *testing.T) {
			cfg, js := sharedNATS(t)
			cfg.Streams.StreamsStorage = storage
			b, rec, err := openBus(t, cfg)
			if err != nil {
				t.Fatal(err)
			}
			want := map[string]jetstream.StorageType{"FLOVYN_EVENTS": jetstream.FileStorage, "FLOVYN_EVENTS_INDEX": jetstream.FileStorage,
				"FLOVYN_STREAMS": map[string]jetstream.StorageType{"": jetstream.MemoryStorage, "memory": jetstream.MemoryStorage,
					"file": jetstream.FileStorage}[storage]}
			for name, storage := range want {
				if got := streamConfig(t, js, name); got.Storage != storage || !strings.HasSuffix(got.Description, streamMark) {
					t.Errorf("stream %s: storage %s, description %q; want %s, created by eventhook", name, got.Storage, got.Description, storage)
				}
			}
			if n := len(rec.records(t, "stream created")); n != 3 {
				t.Errorf("%d streams logged as created; want 3", n)
			}
			if n := len(rec.records(t, "stream setting not applied")); n != 0 {
				t.Errorf("%d settings not applied on streams eventhook just created", n)
			}
			checkStreamWorks(t, b)
		})
	}
}

// TestAdoptsForeignStreams: streams another writer created (Flovyn's server creates FLOVYN_STREAMS on memory storage
// with a 1h max age) are adopted as they are, whatever the configuration says: their storage is kept, eventhook adds
// only the subject it needs and raises the events stream's duplicate window, never removes a subject, leaves the
// owner's retention settings alone, and logs each setting it did not apply once.
func TestAdoptsForeignStreams(t *testing.T) {
	cfg, js := sharedNATS(t)
	foreignStreams := flovynStreams
	foreignStreams.Subjects = []string{"flovyn.other.>"} // lacks the subject eventhook needs: it is added
	foreignEvents := jetstream.StreamConfig{Name: "FLOVYN_EVENTS", Subjects: []string{"flovyn.events.>", "flovyn.audit.>"},
		Storage: jetstream.FileStorage, MaxAge: 24 * time.Hour, Duplicates: 30 * time.Second}
	for _, sc := range []jetstream.StreamConfig{foreignStreams, foreignEvents} {
		if _, err := js.CreateStream(t.Context(), sc); err != nil {
			t.Fatal(err)
		}
	}
	cfg.Streams.StreamsStorage = "file" // what the config says cannot be applied: storage never changes in place
	cfg.Streams.StreamsMaxAge = 2 * time.Hour
	b, rec, err := openBus(t, cfg)
	if err != nil {
		t.Fatalf("NewJetStream over foreign streams: %v", err)
	}

	sts := streamConfig(t, js, "FLOVYN_STREAMS")
	if sts.Storage != jetstream.MemoryStorage || sts.MaxAge != time.Hour || sts.AllowDirect || sts.Description != "" {
		t.Errorf("FLOVYN_STREAMS storage %s max age %v allow direct %v description %q; want memory, 1h, false, \"\" (the owner's)",
			sts.Storage, sts.MaxAge, sts.AllowDirect, sts.Description)
	}
	if want := []string{"flovyn.other.>", "flovyn.streams.workflow.>"}; !slices.Equal(sts.Subjects, want) {
		t.Errorf("FLOVYN_STREAMS subjects %q; want %q (the owner's kept, eventhook's added)", sts.Subjects, want)
	}
	evs := streamConfig(t, js, "FLOVYN_EVENTS")
	if evs.Duplicates != 2*time.Minute || evs.MaxAge != 24*time.Hour || !slices.Equal(evs.Subjects, foreignEvents.Subjects) {
		t.Errorf("FLOVYN_EVENTS duplicates %v max age %v subjects %q; want 2m (raised), 24h, %q (kept)",
			evs.Duplicates, evs.MaxAge, evs.Subjects, foreignEvents.Subjects)
	}

	got := rec.notApplied(t, "FLOVYN_STREAMS")
	for setting, want := range map[string]struct{ have, want, key, why string }{
		"storage":      {"memory", "file", "jetstream.streams_storage", "cannot change a stream's storage in place"},
		"max_age":      {"1h0m0s", "2h0m0s", "jetstream.streams_max_age", "not created by eventhook"},
		"allow_direct": {"false", "true", "", "through the stream leader"},
	} {
		r := got[setting]
		if r == nil {
			t.Errorf("FLOVYN_STREAMS %s not logged as not applied; logged: %v", setting, got)
			continue
		}
		if r["have"] != want.have || r["want"] != want.want || (want.key != "" && r["key"] != want.key) ||
			!strings.Contains(r["why"].(string), want.why) {
			t.Errorf("FLOVYN_STREAMS %s logged as %v; want have %s, want %s, key %s, why containing %q", setting, r, want.have, want.want, want.key, want.why)
		}
	}
	if got["storage"] != nil && got["storage"]["level"] != "WARN" {
		t.Errorf("storage difference logged at %v; want WARN", got["storage"]["level"])
	}
	if len(got) != 3 {
		t.Errorf("FLOVYN_STREAMS settings logged as not applied: %v; want storage, max_age and allow_direct", got)
	}
	ev := rec.notApplied(t, "FLOVYN_EVENTS")
	if ev["max_age"] == nil || ev["max_age"]["have"] != "24h0m0s" || ev["duplicate_window"] != nil {
		t.Errorf("FLOVYN_EVENTS logged as not applied: %v; want max_age (24h kept) and not the duplicate window (raised)", ev)
	}
	checkStreamWorks(t, b)

	// A second start changes nothing more and logs the same, once each.
	b.Close()
	_, rec2, err := openBus(t, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if again := rec2.notApplied(t, "FLOVYN_STREAMS"); len(again) != 3 {
		t.Errorf("second start logged %v for FLOVYN_STREAMS; want the same three settings", again)
	}
}

// TestAdoptsOwnStream: on a stream eventhook created, the configured settings are applied on restart, except the
// storage, which JetStream cannot change in place: the stream is kept (with its events) and the difference logged.
func TestAdoptsOwnStream(t *testing.T) {
	cfg, js := sharedNATS(t)
	cfg.Streams.StreamsStorage = "file"
	b, _, err := openBus(t, cfg)
	if err != nil {
		t.Fatal(err)
	}
	tenant, wf := uuid.New(), uuid.NewString()
	bustest.PublishStream(t, b, bustest.Stream(tenant, wf, "", 1, event.StreamToken, "kept"))
	b.Close()

	cfg.Streams.StreamsStorage = "memory" // the new default, over a stream an earlier version created on file
	cfg.Streams.StreamsMaxAge = 30 * time.Minute
	b, rec, err := openBus(t, cfg)
	if err != nil {
		t.Fatalf("NewJetStream with another storage: %v", err)
	}
	sts := streamConfig(t, js, "FLOVYN_STREAMS")
	if sts.Storage != jetstream.FileStorage || sts.MaxAge != 30*time.Minute {
		t.Errorf("FLOVYN_STREAMS storage %s max age %v; want file (kept), 30m (applied)", sts.Storage, sts.MaxAge)
	}
	got := rec.notApplied(t, "FLOVYN_STREAMS")
	if len(got) != 1 || got["storage"] == nil || got["storage"]["have"] != "file" || got["storage"]["want"] != "memory" ||
		!strings.Contains(got["storage"]["why"].(string), "delete the stream") {
		t.Errorf("logged as not applied: %v; want only the storage (file, memory), saying how to change it", got)
	}
	s := bustest.SubscribeStream(t, b, tenant, wf, bus.StartEarliest())
	if d := bustest.Next(t, s); d.Value == nil || d.Value.Payload != "kept" {
		t.Fatalf("first delivery %+v; want the event stored before the restart", d)
	}
}

// TestAdoptsWhenUpdateRefused: when JetStream refuses the configured update (3 replicas on a single server), the
// stream is still updated with what eventhook needs (the events stream's duplicate window), the rest is logged with
// JetStream's reason, and the sidecar starts.
func TestAdoptsWhenUpdateRefused(t *testing.T) {
	cfg, js := sharedNATS(t)
	b, _, err := openBus(t, cfg)
	if err != nil {
		t.Fatal(err)
	}
	b.Close()
	evs := streamConfig(t, js, "FLOVYN_EVENTS")
	evs.Duplicates = 30 * time.Second // shortened by hand: eventhook raises it again
	if _, err := js.UpdateStream(t.Context(), evs); err != nil {
		t.Fatal(err)
	}

	cfg.Streams.Replicas = 3
	b, rec, err := openBus(t, cfg)
	if err != nil {
		t.Fatalf("NewJetStream with an update JetStream refuses: %v", err)
	}
	if evs = streamConfig(t, js, "FLOVYN_EVENTS"); evs.Duplicates != 2*time.Minute || max(evs.Replicas, 1) != 1 {
		t.Errorf("FLOVYN_EVENTS duplicates %v replicas %d; want 2m (what eventhook needs, applied), 1", evs.Duplicates, evs.Replicas)
	}
	for _, name := range []string{"FLOVYN_EVENTS", "FLOVYN_EVENTS_INDEX", "FLOVYN_STREAMS"} {
		got := rec.notApplied(t, name)
		if r := got["replicas"]; r == nil || r["have"] != "1" || r["want"] != "3" || !strings.Contains(r["why"].(string), "JetStream refused the update") {
			t.Errorf("%s logged as not applied: %v; want replicas 1, 3, refused by JetStream", name, got)
		}
	}
	if n := len(rec.records(t, "stream update refused; adopting the stream")); n != 3 {
		t.Errorf("%d refused updates logged; want 3", n)
	}
	checkStreamWorks(t, b)
}

// TestVerifiesStreams: with manage_streams false, a missing stream, a stream that does not capture eventhook's subjects,
// and an events stream whose duplicate window is too short are errors naming the stream, the setting, what it is and
// what is needed; storage, retention and max age are logged, not errors; and nothing is changed.
func TestVerifiesStreams(t *testing.T) {
	tests := []struct {
		name    string
		streams []jetstream.StreamConfig
		wantErr []string // substrings of the error; nil: the bus starts
	}{
		{name: "missing", wantErr: []string{"FLOVYN_EVENTS", "must exist"}},
		{name: "wrong subjects", streams: []jetstream.StreamConfig{
			{Name: "FLOVYN_EVENTS", Subjects: []string{"flovyn.events.x.>"}},
		}, wantErr: []string{"stream FLOVYN_EVENTS", `subjects ["flovyn.events.x.>"]`, "do not capture flovyn.events.>", `add "flovyn.events.>"`}},
		{name: "short duplicate window", streams: []jetstream.StreamConfig{
			{Name: "FLOVYN_EVENTS", Subjects: []string{"flovyn.events.>"}, Duplicates: 30 * time.Second},
		}, wantErr: []string{"stream FLOVYN_EVENTS", "duplicate window 30s is shorter than jetstream.duplicate_window 2m0s"}},
		{name: "streams subject missing", streams: []jetstream.StreamConfig{
			{Name: "FLOVYN_EVENTS", Subjects: []string{"flovyn.events.>"}},
			{Name: "FLOVYN_EVENTS_INDEX", Subjects: []string{"flovyn.index.>"}},
			{Name: "FLOVYN_STREAMS", Subjects: []string{"flovyn.streams.other.>"}, Storage: jetstream.MemoryStorage},
		}, wantErr: []string{"stream FLOVYN_STREAMS", "do not capture flovyn.streams.workflow.*"}},
		{name: "other differences are not errors", streams: []jetstream.StreamConfig{
			{Name: "FLOVYN_EVENTS", Subjects: []string{"flovyn.events.>"}, Storage: jetstream.MemoryStorage, MaxAge: time.Hour,
				Duplicates: 5 * time.Minute},
			// Interest retention drops what no consumer is interested in: logged, eventhook cannot tell it is meant.
			{Name: "FLOVYN_EVENTS_INDEX", Subjects: []string{"flovyn.index.>"}, Retention: jetstream.InterestPolicy},
			// flovyn.streams.workflow.* captures every generic stream subject (one token per workflow or task).
			{Name: "FLOVYN_STREAMS", Subjects: []string{"flovyn.streams.workflow.*"}, Storage: jetstream.FileStorage, MaxAge: time.Hour},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, js := sharedNATS(t)
			cfg.Streams.VerifyOnly = true
			for _, sc := range tt.streams {
				if _, err := js.CreateStream(t.Context(), sc); err != nil {
					t.Fatal(err)
				}
			}
			b, rec, err := openBus(t, cfg)
			if tt.wantErr != nil {
				if err == nil {
					t.Fatal("NewJetStream = nil; want an error")
				}
				for _, want := range tt.wantErr {
					if !strings.Contains(err.Error(), want) {
						t.Errorf("NewJetStream = %v; want it to contain %q", err, want)
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("NewJetStream = %v; want nil", err)
			}
			for _, sc := range tt.streams {
				if got := streamConfig(t, js, sc.Name); got.Description != "" || got.AllowDirect {
					t.Errorf("stream %s was changed: %+v", sc.Name, got)
				}
			}
			logged := rec.notApplied(t, "FLOVYN_EVENTS")
			for setting, why := range map[string]string{"storage": "cannot change a stream's storage in place",
				"max_age": "manage_streams is false", "duplicate_window": "manage_streams is false"} {
				if logged[setting] == nil || !strings.Contains(logged[setting]["why"].(string), why) {
					t.Errorf("FLOVYN_EVENTS %s logged as %v; want it logged, saying %q", setting, logged[setting], why)
				}
			}
			if idx := rec.notApplied(t, "FLOVYN_EVENTS_INDEX"); idx["retention"] == nil || idx["retention"]["have"] != "interest" {
				t.Errorf("FLOVYN_EVENTS_INDEX logged as not applied: %v; want the retention (interest)", idx)
			}
			if st := rec.notApplied(t, "FLOVYN_STREAMS"); st["storage"] == nil || st["storage"]["have"] != "file" || st["storage"]["want"] != "memory" {
				t.Errorf("FLOVYN_STREAMS logged as not applied: %v; want the storage (file, memory)", st)
			}
			// Stream events and lifecycle events still flow (the index's retention only slows late subscribers).
			tenant, wf := uuid.New(), uuid.New()
			st := bustest.SubscribeStream(t, b, tenant, wf.String(), bus.StartLive())
			evs := bustest.Subscribe(t, b, event.AllEvents(tenant), bus.StartLive())
			bustest.PublishStream(t, b, bustest.Stream(tenant, wf.String(), "", 1, event.StreamToken, "hello"))
			bustest.PublishEvent(t, b, bustest.Event(tenant, "workflow.started").WithWorkflow(wf))
			if d := bustest.Next(t, st); d.Value == nil || d.Value.Payload != "hello" {
				t.Fatalf("stream delivery %+v; want the token hello", d)
			}
			bustest.ExpectNext(t, evs, "workflow.started")
		})
	}
}

// TestEmbeddedMemoryStreamsGiveUpTheOldest: on the embedded server (which holds at most 64 MiB in memory) a memory
// FLOVYN_STREAMS is bounded below that, so a burst of stream events larger than the memory gives up the oldest ones
// instead of failing publishes with "insufficient resources".
func TestEmbeddedMemoryStreamsGiveUpTheOldest(t *testing.T) {
	b := newJetStreamTestBus(t, nil)
	t.Cleanup(func() { b.Close() })
	tenant, wf := uuid.New(), uuid.NewString()
	payload := strings.Repeat("t", 900<<10)
	const n = 90 // 90 × 900 KiB: more than the embedded server's 64 MiB
	for i := range n {
		if _, err := b.PublishStream(t.Context(), bustest.Stream(tenant, wf, "", int32(i), event.StreamData, payload)); err != nil {
			t.Fatalf("publish %d of %d: %v", i, n, err)
		}
	}
	info, err := b.stream.stream.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if info.Config.Storage != jetstream.MemoryStorage || info.State.Bytes > embeddedMaxMemory*3/4 || info.State.FirstSeq == 1 {
		t.Fatalf("storage %v, %d bytes held from sequence %d; want memory, at most %d bytes, the oldest given up",
			info.Config.Storage, info.State.Bytes, info.State.FirstSeq, embeddedMaxMemory*3/4)
	}
}
