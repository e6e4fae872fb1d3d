package subjects

import (
	"errors"
	"strings"
	"testing"

	"github.com/nats-io/nats-server/v2/server"
)

const tenant = "3f0c2b1e-8a4d-4c61-9f0e-2d7b5a9c00e1"

func TestValidateEventType(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		wantErr bool
	}{
		{"two tokens", "workflow.completed", false},
		{"one token", "workflow", false},
		{"underscore and dash", "child_workflow.cancellation-requested", false},
		{"empty", "", true},
		{"empty token", "workflow..completed", true},
		{"leading dot", ".workflow", true},
		{"trailing dot", "workflow.", true},
		{"star", "workflow.*", true},
		{"gt", "workflow.>", true},
		{"space", "workflow completed", true},
		{"tab", "workflow.\tx", true},
		{"dollar", "$SYS.x", true},
		{"unicode", "wörkflow", true},
		{"too long", strings.Repeat("a", 256), true},
		{"max length", strings.Repeat("a", 255), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ValidateEventType(tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("ValidateEventType(%q) = %v; wantErr %v", tt.in, err, tt.wantErr)
			}
			if err != nil && !errors.Is(err, ErrInvalid) {
				t.Fatalf("ValidateEventType(%q) = %v; want it to wrap ErrInvalid", tt.in, err)
			}
		})
	}
}

func TestBuildAndParse(t *testing.T) {
	subj, err := Event(tenant, "task.completed")
	if err != nil {
		t.Fatal(err)
	}
	if want := "flovyn.events." + tenant + ".task.completed"; subj != want {
		t.Fatalf("Event = %q; want %q", subj, want)
	}
	gotTenant, gotType, err := ParseEvent(subj)
	if err != nil || gotTenant != tenant || gotType != "task.completed" {
		t.Fatalf("ParseEvent(%q) = %q, %q, %v", subj, gotTenant, gotType, err)
	}

	ssubj, err := Stream("wf-1")
	if err != nil || ssubj != "flovyn.streams.workflow.wf-1" {
		t.Fatalf("Stream = %q, %v", ssubj, err)
	}
	key, err := ParseStream(ssubj)
	if err != nil || key != "wf-1" {
		t.Fatalf("ParseStream(%q) = %q, %v", ssubj, key, err)
	}
}

func TestBuildRejectsBadTokens(t *testing.T) {
	for _, bad := range []string{"", "a.b", "*", ">", "a b", "$SYS", "a\nb", "%2E"} {
		if _, err := Stream(bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("Stream(%q) error = %v; want ErrInvalid", bad, err)
		}
		if _, err := Event(bad, "task.completed"); !errors.Is(err, ErrInvalid) {
			t.Errorf("Event(%q, ...) error = %v; want ErrInvalid", bad, err)
		}
		if _, err := EventFilter(bad, ""); !errors.Is(err, ErrInvalid) {
			t.Errorf("EventFilter(%q, ...) error = %v; want ErrInvalid", bad, err)
		}
	}
}

func TestParseRejects(t *testing.T) {
	for _, subj := range []string{"flovyn.events." + tenant, "flovyn.events." + tenant + ".", "other.events.t.x",
		"flovyn.events.*.x", "flovyn.events.t.a..b"} {
		if _, _, err := ParseEvent(subj); err == nil {
			t.Errorf("ParseEvent(%q) = nil error; want one", subj)
		}
	}
	for _, subj := range []string{"flovyn.streams.workflow.", "flovyn.streams.workflow.a.b", "flovyn.streams.workflow.>"} {
		if _, err := ParseStream(subj); err == nil {
			t.Errorf("ParseStream(%q) = nil error; want one", subj)
		}
	}
}

func TestEventFilter(t *testing.T) {
	tests := []struct {
		prefix, want string
	}{
		{"", "flovyn.events.T.>"},
		{"workflow", "flovyn.events.T.>"},
		{"workflow.", "flovyn.events.T.workflow.>"},
		{"workflow.comp", "flovyn.events.T.workflow.>"},
		{"workflow.completed", "flovyn.events.T.workflow.>"},
		{"a.b.c", "flovyn.events.T.a.b.>"},
		{"*.x", "flovyn.events.T.>"},
		{">.x", "flovyn.events.T.>"},
		{"a..b", "flovyn.events.T.>"},
	}
	for _, tt := range tests {
		got, err := EventFilter("T", tt.prefix)
		if err != nil || got != tt.want {
			t.Errorf("EventFilter(T, %q) = %q, %v; want %q", tt.prefix, got, err, tt.want)
		}
	}
}

// TestEventFilterNotTheDesignBug holds the bug of the original design: a dotted prefix mapped to an exact subject.
func TestEventFilterNotTheDesignBug(t *testing.T) {
	filter, _ := EventFilter(tenant, "workflow.comp")
	subj, _ := Event(tenant, "workflow.completed")
	if !server.SubjectMatchesFilter(subj, filter) {
		t.Fatalf("filter %q misses %q", filter, subj)
	}
}

// FuzzEventFilterSuperset checks, with NATS' own subject matcher, that every valid event type that starts with a prefix
// is on a subject the prefix's subscription subject receives.
func FuzzEventFilterSuperset(f *testing.F) {
	for _, s := range [][2]string{
		{"workflow.comp", "workflow.completed"}, {"workflow", "workflow"}, {"workflow", "workflowx.y"},
		{"workflow.", "workflow.a.b"}, {"a.b.c", "a.b.cd.e"}, {"", "x"}, {"task.completed", "task.completed"},
		{"*", "x"}, {"a.>", "a.b"},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, prefix, eventType string) {
		filter, err := EventFilter(tenant, prefix)
		if err != nil {
			t.Fatalf("EventFilter(%q): %v", prefix, err)
		}
		if !server.IsValidSubject(filter) {
			t.Fatalf("EventFilter(%q) = %q: not a valid NATS subject", prefix, filter)
		}
		if !strings.HasPrefix(filter, EventsPrefix+tenant+".") {
			t.Fatalf("EventFilter(%q) = %q: left the tenant's namespace", prefix, filter)
		}
		if ValidateEventType(eventType) != nil || !strings.HasPrefix(eventType, prefix) {
			return
		}
		subj, err := Event(tenant, eventType)
		if err != nil {
			t.Fatalf("Event(%q): %v", eventType, err)
		}
		if !server.SubjectMatchesFilter(subj, filter) {
			t.Fatalf("EventFilter(%q) = %q does not receive %q", prefix, filter, subj)
		}
	})
}

// FuzzToken checks that a token accepted by ValidateToken builds subjects that parse back to it and never widen.
func FuzzToken(f *testing.F) {
	for _, s := range []string{"wf-1", "", "a.b", "*", ">", " ", "$SYS", "3F0C2B1E-8A4D-4C61-9F0E-2D7B5A9C00E1", "a\x00b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, tok string) {
		subj, err := Stream(tok)
		if err != nil {
			if ValidateToken(tok) == nil {
				t.Fatalf("Stream(%q) failed but the token is valid: %v", tok, err)
			}
			return
		}
		if !server.IsValidLiteralSubject(subj) {
			t.Fatalf("Stream(%q) = %q: not a literal subject", tok, subj)
		}
		if key, err := ParseStream(subj); err != nil || key != tok {
			t.Fatalf("ParseStream(%q) = %q, %v; want %q", subj, key, err, tok)
		}
		esubj, err := Event(tok, "a.b")
		if err != nil {
			t.Fatalf("Event(%q, a.b): %v", tok, err)
		}
		if ten, typ, err := ParseEvent(esubj); err != nil || ten != tok || typ != "a.b" {
			t.Fatalf("ParseEvent(%q) = %q, %q, %v", esubj, ten, typ, err)
		}
	})
}

func TestCovers(t *testing.T) {
	tests := []struct {
		filter, sub string
		want        bool
	}{
		{"flovyn.streams.workflow.>", "flovyn.streams.workflow.>", true},
		{"flovyn.streams.workflow.>", "flovyn.streams.workflow.*", true},
		{"flovyn.streams.workflow.>", "flovyn.streams.workflow.w1", true},
		{"flovyn.streams.workflow.*", "flovyn.streams.workflow.*", true},
		{"flovyn.streams.workflow.*", "flovyn.streams.workflow.w1", true},
		{"flovyn.streams.workflow.*", "flovyn.streams.workflow.>", false}, // '>' reaches deeper
		{"flovyn.streams.workflow.*", "flovyn.streams.workflow.a.b", false},
		{"flovyn.>", "flovyn.events.>", true},
		{">", "flovyn.events.>", true},
		{"flovyn.*.>", "flovyn.events.>", true},
		{"flovyn.events.*.>", "flovyn.events.>", false}, // flovyn.events.t (one token) escapes
		{"flovyn.events.x.>", "flovyn.events.>", false},
		{"flovyn.events.>", "flovyn.events", false},
		{"flovyn.events", "flovyn.events.>", false},
		{"flovyn.events", "flovyn.events", true},
		{"flovyn.events.>", "flovyn.streams.workflow.>", false},
		{"flovyn.streams.workflow", "flovyn.streams.workflow.>", false},
		{"a.b", "a.*", false},
	}
	for _, tt := range tests {
		if got := Covers(tt.filter, tt.sub); got != tt.want {
			t.Errorf("Covers(%q, %q) = %v; want %v", tt.filter, tt.sub, got, tt.want)
		}
	}
}
