package natsbus

import (
	"errors"
	"testing"

	"github.com/flovyn/eventhook/sidecar/bus/bustest"
	"github.com/flovyn/eventhook/sidecar/event"
	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// TestParsePubAck reads the answers nats-server writes (fast) and others (through encoding/json), errors included.
func TestParsePubAck(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want jetstream.PubAck
		fast bool
	}{
		{`{"stream":"FLOVYN_EVENTS","seq":12}`, jetstream.PubAck{Stream: "FLOVYN_EVENTS", Sequence: 12}, true},
		{`{"stream":"S","seq":7,"duplicate": true}`, jetstream.PubAck{Stream: "S", Sequence: 7, Duplicate: true}, true},
		{`{"stream":"S","seq":7,"duplicate":true}`, jetstream.PubAck{Stream: "S", Sequence: 7, Duplicate: true}, true},
		{`{"stream":"S","domain":"hub","seq":18446744073709551615}`, jetstream.PubAck{Stream: "S", Domain: "hub", Sequence: 1<<64 - 1}, true},
		{`{"stream":"S", "seq":3}`, jetstream.PubAck{Stream: "S", Sequence: 3}, false},
		{`{"seq":3,"stream":"S"}`, jetstream.PubAck{Stream: "S", Sequence: 3}, false},
		{`{"stream":"S","seq":3,"duplicate": true,"batch":"b","count":2}`, jetstream.PubAck{Stream: "S", Sequence: 3, Duplicate: true}, false},
		{`{"stream":"S\u0041","seq":3}`, jetstream.PubAck{Stream: "SA", Sequence: 3}, false},
	} {
		_, fast := fastPubAck([]byte(tc.in))
		got, err := parsePubAck([]byte(tc.in))
		if err != nil || fast != tc.fast || got.Stream != tc.want.Stream || got.Sequence != tc.want.Sequence ||
			got.Duplicate != tc.want.Duplicate || got.Domain != tc.want.Domain {
			t.Errorf("parsePubAck(%s) = %+v, %v (fast %v); want %+v (fast %v)", tc.in, got, err, fast, tc.want, tc.fast)
		}
	}
	var apiErr *jetstream.APIError
	if _, err := parsePubAck([]byte(`{"error":{"code":503,"err_code":10077,"description":"maximum messages exceeded"}}`)); !errors.As(err, &apiErr) || apiErr.ErrorCode != 10077 {
		t.Errorf("an API error: %v", err)
	}
	for _, bad := range []string{``, `{`, `{"stream":"S","seq":}`, `{"seq":1}`, `null`} {
		if _, err := parsePubAck([]byte(bad)); err == nil {
			t.Errorf("parsePubAck(%q): no error", bad)
		}
	}
}

// TestAckerNoStream publishes to a subject no stream captures: after nats.go's two resends, ErrNoStreamResponse; and
// nothing stays pending.
func TestAckerNoStream(t *testing.T) {
	b := newJetStreamTestBus(t, nil)
	defer b.Close()
	m := &nats.Msg{Subject: "nowhere.at.all", Data: []byte("{}")}
	f, err := b.acks.publish(m)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case ack := <-f.Ok():
		t.Fatalf("acked by %+v", ack)
	case err := <-f.Err():
		if !errors.Is(err, jetstream.ErrNoStreamResponse) {
			t.Errorf("error %v, want ErrNoStreamResponse", err)
		}
	}
	b.acks.mu.Lock()
	n := len(b.acks.pending)
	b.acks.mu.Unlock()
	if n != 0 {
		t.Errorf("%d publishes still pending", n)
	}
	// And a publish to the events stream is acked, a second time as a duplicate.
	ev := bustest.Event(uuid.New(), "task.completed")
	m, err = eventMsg(ev, event.TenantKeyTenantID)
	if err != nil {
		t.Fatal(err)
	}
	var seqs []uint64
	for i := range 2 {
		f, err := b.acks.publish(m)
		if err != nil {
			t.Fatal(err)
		}
		select {
		case ack := <-f.Ok():
			if ack.Duplicate != (i == 1) || ack.Stream != b.events.name {
				t.Errorf("send %d: %+v", i, ack)
			}
			seqs = append(seqs, ack.Sequence)
		case err := <-f.Err():
			t.Fatal(err)
		}
	}
	if seqs[0] != seqs[1] {
		t.Errorf("the duplicate names sequence %d, the original %d", seqs[1], seqs[0])
	}
}
