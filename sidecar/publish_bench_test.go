package sidecar

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/flovyn/eventhook/sidecar/bus"
	"github.com/flovyn/eventhook/sidecar/config"
	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
)

// BenchmarkPublishHandler measures the sidecar's own work for one publish request — routing, auth, decoding,
// validation, metrics and the answer — on the memory backend, without a network (the handler called directly): what
// the daemon spends per request beyond the HTTP server and the NATS client.
func BenchmarkPublishHandler(b *testing.B) {
	cfg := testConfig(b)
	eb := bus.NewMemory(bus.MemoryOptions{Feed: bus.FeedOptions{EventBuffer: 1024, StreamBuffer: 256,
		Encoders: FrameEncoders(cfg.Events.TenantKey)}})
	defer eb.Close()
	if err := cfg.Validate(); err != nil {
		b.Fatal(err)
	}
	srv, err := NewServer(Options{Config: cfg, Bus: eb, Logger: config.NewLogger(config.Log{Level: "error"}, io.Discard),
		Registry: prometheus.NewRegistry()})
	if err != nil {
		b.Fatal(err)
	}
	h := srv.Handler()
	tenant, wf := uuid.NewString(), uuid.NewString()
	run := func(b *testing.B, path string, status int, body func() []byte, header ...string) {
		b.ReportAllocs()
		for b.Loop() {
			req := httptest.NewRequest(http.MethodPost, path, bytes.NewReader(body()))
			req.Header.Set("Content-Type", "application/json")
			for i := 0; i+1 < len(header); i += 2 {
				req.Header.Set(header[i], header[i+1])
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != status {
				b.Fatalf("%s: %d %s", path, rec.Code, rec.Body)
			}
		}
	}
	b.Run("event", func(b *testing.B) {
		run(b, "/v1/events", http.StatusAccepted, func() []byte {
			return fmt.Appendf(nil, `{"id":"%s","tenant_id":"%s","workflow_execution_id":"%s","task_execution_id":"%s",`+
				`"event_type":"task.completed","source":"bench","data":{"seq":1,"sent_ns":1700000000000000000},`+
				`"timestamp_ms":1700000000000,"correlation_id":null}`, uuid.NewString(), tenant, wf, uuid.NewString())
		})
	})
	token := fmt.Appendf(nil, `{"workflowExecutionId":"%s","taskExecutionId":"%s","sequence":1,"type":"TOKEN",`+
		`"payload":" hello","timestampMs":1700000000000}`, wf, uuid.NewString())
	b.Run("token", func(b *testing.B) {
		run(b, "/v1/streams", http.StatusAccepted, func() []byte { return token }, "Flovyn-Tenant-Id", tenant)
	})
}
