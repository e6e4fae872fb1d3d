package sidecar

import (
	"net/url"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/flovyn/eventhook/sidecar/bus"
)

// TestInvalidUTF8Publishes: an event whose source, a data string or a data key holds bytes that are not UTF-8 is a
// 400 naming the field, on every backend, and nothing of it reaches a subscriber: the next event does, and parses.
func TestInvalidUTF8Publishes(t *testing.T) {
	for _, backend := range []string{"memory", "jetstream"} {
		t.Run(backend, func(t *testing.T) {
			var b bus.Bus
			if backend == "jetstream" {
				b = newJetStreamTestBus(t)
				t.Cleanup(func() { b.Close() })
			}
			h := newHarness(t, nil, b)
			tenant := uuid.New()
			s := h.stream(t, h.unix, "/events/stream", url.Values{"tenant_id": {tenant.String()}}, "")
			head := `{"tenant_id":"` + tenant.String() + `","event_type":"x.y"`
			for _, bad := range []string{"\xff", "\xc0\xaf", "\xed\xa0\x80"} {
				for _, tt := range []struct{ body, field string }{
					{head + `,"source":"w` + bad + `"}`, "source"},
					{head + `,"data":{"list":["` + bad + `"]}}`, "data.list[0]"},
					{head + `,"data":{"k` + bad + `":1}}`, "data.k"},
				} {
					status, hdr, body := h.do(t, "POST", "/v1/events", "application/json", tt.body)
					p := problemOf(t, status, hdr, body, 400)
					if len(p.Errors) != 1 || !strings.HasPrefix(p.Errors[0].Field, tt.field) || !strings.Contains(p.Errors[0].Message, "UTF-8") {
						t.Errorf("%q: %+v; want one error on %s saying UTF-8", tt.body, p, tt.field)
					}
				}
			}
			h.publish(t, eventJSON(tenant, "after", ""))
			s.nextLifecycle(t, "after")
		})
	}
}
