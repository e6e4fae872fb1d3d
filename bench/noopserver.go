package bench

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// noopEvent is what the parsing no-op handler decodes a lifecycle event into: the FlovynEvent's fields, as a plain Go
// handler would with encoding/json.
type noopEvent struct {
	ID                  string          `json:"id"`
	TenantID            string          `json:"tenant_id"`
	WorkflowExecutionID *string         `json:"workflow_execution_id"`
	TaskExecutionID     *string         `json:"task_execution_id"`
	EventType           string          `json:"event_type"`
	Source              string          `json:"source"`
	Data                json.RawMessage `json:"data"`
	TimestampMs         int64           `json:"timestamp_ms"`
	CorrelationID       *string         `json:"correlation_id"`
}

// noopToken is what the parsing no-op handler decodes a generic stream event into.
type noopToken struct {
	WorkflowExecutionID string `json:"workflowExecutionId"`
	TaskExecutionID     string `json:"taskExecutionId"`
	Sequence            int32  `json:"sequence"`
	Type                string `json:"type"`
	Payload             string `json:"payload"`
	TimestampMs         int64  `json:"timestampMs"`
}

// noopStreamReply is what the parsing no-op handler answers to a stream event: the size and shape of the sidecar's.
var noopStreamReply = []byte(`{"sequence":1,"duplicate":false}` + "\n")

// prototype is the bare publisher: the parsing no-op handler that also publishes what it parsed to JetStream and
// waits for the PubAck before it answers, with nothing else (no validation, index, metrics or limits). It is the
// floor of any sidecar that answers only once the event is stored, with nats.go.
type prototype struct {
	js jetstream.JetStream
}

func (p *prototype) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	reply := noopReply
	var m *nats.Msg
	if r.URL.Path == "/v1/streams" {
		var t noopToken
		if err = json.Unmarshal(body, &t); err == nil {
			tenant := r.Header.Get("Flovyn-Tenant-Id")
			m = &nats.Msg{Subject: "flovyn.streams.workflow." + t.WorkflowExecutionID, Header: nats.Header{"Flovyn-Tenant-Id": {tenant}}, Data: body}
		}
		reply = noopStreamReply
	} else {
		var e noopEvent
		if err = json.Unmarshal(body, &e); err == nil {
			m = &nats.Msg{Subject: "flovyn.events." + e.TenantID + "." + e.EventType, Header: nats.Header{},
				Data: body}
			m.Header.Set(jetstream.MsgIDHeader, e.TenantID+":"+e.ID)
		}
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if _, err := p.js.PublishMsg(r.Context(), m); err != nil {
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	h := w.Header()
	h["Content-Type"] = []string{"application/json"}
	w.WriteHeader(http.StatusAccepted)
	_, _ = w.Write(reply)
}

// parsingNoopHandler reads the body, parses it as the sidecar would be sent it (a FlovynEvent on /v1/events, a
// StreamEvent on /v1/streams) with encoding/json, and answers 202 with a canned reply (400 when it does not parse):
// the ceiling of a plain Go HTTP handler that does what any handler of these requests must.
func parsingNoopHandler(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	reply := noopReply
	if r.URL.Path == "/v1/streams" {
		var t noopToken
		err = json.Unmarshal(body, &t)
		reply = noopStreamReply
	} else {
		var e noopEvent
		err = json.Unmarshal(body, &e)
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	h := w.Header()
	h["Content-Type"] = []string{"application/json"}
	w.WriteHeader(http.StatusAccepted)
	_, _ = w.Write(reply)
}

// ServeNoop serves the production scenario's no-op handler on a Unix socket at path until ctx ends: it reads each
// request's body, parses it with encoding/json (a FlovynEvent, or a StreamEvent on /v1/streams) and answers 202 with
// a canned reply, and GET /readyz answers 200. The scenario runs it as a process of its own (eventhook bench
// -serve-noop PATH), so that its CPU can be read from /proc as the daemon's is.
//
// With natsURL set it is the bare prototype instead: it also publishes what it parsed to JetStream on that server
// (the event's subject and Nats-Msg-Id, or the token's subject and tenant header, as the sidecar would) and answers
// once the PubAck came; nothing else.
func ServeNoop(ctx context.Context, path, natsURL string) error {
	var h http.Handler = http.HandlerFunc(parsingNoopHandler)
	if natsURL != "" {
		nc, err := nats.Connect(natsURL, nats.Name("eventhook-bench-prototype"))
		if err != nil {
			return err
		}
		defer nc.Close()
		js, err := jetstream.New(nc)
		if err != nil {
			return err
		}
		h = &prototype{js: js}
	}
	_ = os.Remove(path)
	l, err := net.Listen("unix", path)
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })
	mux.Handle("/", h)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	stop := context.AfterFunc(ctx, func() { _ = srv.Close() })
	defer stop()
	err = srv.Serve(l)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}
