package event

import (
	"errors"
	"strings"
	"testing"
	"unicode/utf8"
)

// TestInvalidUTF8IsRefused: a FlovynEvent or a StreamEvent with a string that is not valid UTF-8 — a lone 0xFF, an
// overlong C0 AF, an encoded UTF-16 surrogate ED A0 80, or a \u escape of half a surrogate pair — is an error naming the
// field; valid text in any script, and an escaped surrogate pair, pass.
func TestInvalidUTF8IsRefused(t *testing.T) {
	const tenant = `"tenant_id":"3f0c2b1e-8a4d-4c61-9f0e-2d7b5a9c00e1","event_type":"x.y"`
	for _, bad := range []string{"\xff", "\xc0\xaf", "\xed\xa0\x80", `\ud800`, `\udc00`, `\ud800x`, `\ud800\u0041`} {
		for _, tt := range []struct{ body, field string }{
			{`{` + tenant + `,"source":"w` + bad + `"}`, "source"},
			{`{` + tenant + `,"correlation_id":"c` + bad + `"}`, "correlation_id"},
			{`{` + tenant + `,"data":{"items":[1,{"name":"` + bad + `"}]}}`, "data.items[1].name"},
			{`{` + tenant + `,"data":{"k` + bad + `":1}}`, "data.k"},
			{`{` + tenant + `,"data":"` + bad + `"}`, "data"},
			{`{"so` + bad + `urce":"w",` + tenant + `}`, "so"},
		} {
			_, err := DecodeEvent([]byte(tt.body))
			var ve *ValidationError
			if !errors.As(err, &ve) || len(ve.Errors) != 1 || !strings.HasPrefix(ve.Errors[0].Field, tt.field) ||
				!strings.Contains(ve.Errors[0].Message, "UTF-8") {
				t.Errorf("DecodeEvent(%q) = %v; want one error on %s saying UTF-8", tt.body, err, tt.field)
				continue
			}
			if !utf8.ValidString(ve.Errors[0].Field) || !utf8.ValidString(err.Error()) {
				t.Errorf("the error for %q is not valid UTF-8 itself: %q", tt.body, err)
			}
		}
		body := `{"workflowExecutionId":"wf-1","type":"TOKEN","payload":"a` + bad + `"}`
		if _, err := DecodeStreamEvent([]byte(body)); !errors.Is(err, ErrInvalidEvent) || !strings.Contains(err.Error(), "payload") {
			t.Errorf("DecodeStreamEvent(%q) = %v; want an error on payload", body, err)
		}
	}
	for _, good := range []string{"héllo", "日本語", "🚀", `\ud83d\ude80`, `\u00e9`, `\\ud800`, "\\\\"} {
		body := `{` + tenant + `,"source":"w` + good + `","data":{"k` + good + `":"` + good + `"}}`
		if _, err := DecodeEvent([]byte(body)); err != nil {
			t.Errorf("DecodeEvent(%q) = %v; want it accepted", body, err)
		}
	}
	e := &FlovynEvent{ID: [16]byte{1}, TenantID: [16]byte{2}, EventType: "x.y", Source: "w\xff"}
	if err := e.Validate(); err == nil || !strings.Contains(err.Error(), "source") {
		t.Errorf("Validate of a source with 0xFF = %v; want an error on source", err)
	}
}
