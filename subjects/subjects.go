// Package subjects is the NATS subject grammar of eventhook: it builds, validates and parses the subjects that carry
// lifecycle events (flovyn.events.<tenant_id>.<event_type>) and generic streams (flovyn.streams.workflow.<id>), and turns
// a subscription filter (a tenant and an event type prefix) into a NATS subscription subject.
//
// It works on strings only and imports neither NATS nor the sidecar model, so every other package can share it.
package subjects

import (
	"errors"
	"fmt"
	"strings"
)

// Subject prefixes of the two families. Both end with a dot.
const (
	// EventsPrefix starts every lifecycle event subject.
	EventsPrefix = "flovyn.events."
	// StreamsPrefix starts every generic stream subject.
	StreamsPrefix = "flovyn.streams.workflow."
	// AllEvents is the subscription subject of every lifecycle event of every tenant.
	AllEvents = EventsPrefix + ">"
	// AllStreams is the subscription subject of every generic stream.
	AllStreams = StreamsPrefix + ">"
)

// MaxTokenBytes bounds one id token and MaxEventTypeBytes bounds a whole event type.
const (
	MaxTokenBytes     = 255
	MaxEventTypeBytes = 255
)

// ErrInvalid is the family of every error this package returns; check it with errors.Is.
var ErrInvalid = errors.New("subjects: invalid")

// checkToken reports why s is not one subject token: non-empty, at most MaxTokenBytes, made only of ASCII letters,
// digits, '_' and '-'. That excludes '.', the wildcards '*' and '>', whitespace and '$' (NATS' system namespace).
func checkToken(s string) string {
	if s == "" {
		return "empty token"
	}
	if len(s) > MaxTokenBytes {
		return fmt.Sprintf("token longer than %d bytes", MaxTokenBytes)
	}
	for i := 0; i < len(s); i++ {
		if !tokenByte(s[i]) {
			return fmt.Sprintf("character %q at byte %d is not allowed (use letters, digits, '_' and '-')", rune(s[i]), i)
		}
	}
	return ""
}

func tokenByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-'
}

// ValidateToken returns nil when s can stand as one subject token (a tenant id, a workflow or task id): non-empty, at
// most 255 bytes, only ASCII letters, digits, '_' and '-'. Otherwise it returns an error wrapping ErrInvalid that says why.
func ValidateToken(s string) error {
	if why := checkToken(s); why != "" {
		return fmt.Errorf("%w token %q: %s", ErrInvalid, s, why)
	}
	return nil
}

// ValidateEventType returns nil when t is a valid event type: dot-separated tokens as ValidateToken accepts them, at
// most 255 bytes in all. Otherwise it returns an error wrapping ErrInvalid that names the bad token.
func ValidateEventType(t string) error {
	if t == "" {
		return fmt.Errorf("%w event type: empty", ErrInvalid)
	}
	if len(t) > MaxEventTypeBytes {
		return fmt.Errorf("%w event type: longer than %d bytes", ErrInvalid, MaxEventTypeBytes)
	}
	start := 0
	for i := 0; i <= len(t); i++ {
		if i < len(t) && t[i] != '.' {
			continue
		}
		if why := checkToken(t[start:i]); why != "" {
			return fmt.Errorf("%w event type %q: token %d: %s", ErrInvalid, t, strings.Count(t[:start], ".")+1, why)
		}
		start = i + 1
	}
	return nil
}

// Event returns the subject of a lifecycle event, flovyn.events.<tenant>.<eventType>. It returns an error wrapping
// ErrInvalid when tenant is not a valid token or eventType not a valid event type.
func Event(tenant, eventType string) (string, error) {
	if err := ValidateToken(tenant); err != nil {
		return "", fmt.Errorf("tenant: %w", err)
	}
	if err := ValidateEventType(eventType); err != nil {
		return "", err
	}
	return EventsPrefix + tenant + "." + eventType, nil
}

// Stream returns the subject of a generic stream, flovyn.streams.workflow.<key>, where key is the workflow execution id,
// or the task execution id of a standalone task. It returns an error wrapping ErrInvalid when key is not a valid token,
// so an empty key never yields a subject with an empty last token.
func Stream(key string) (string, error) {
	if err := ValidateToken(key); err != nil {
		return "", fmt.Errorf("stream key: %w", err)
	}
	return StreamsPrefix + key, nil
}

// ParseEvent splits a lifecycle event subject into its tenant and event type. It returns an error wrapping ErrInvalid
// when subject is not a valid lifecycle event subject.
func ParseEvent(subject string) (tenant, eventType string, err error) {
	rest, ok := strings.CutPrefix(subject, EventsPrefix)
	if !ok {
		return "", "", fmt.Errorf("%w event subject %q: does not start with %q", ErrInvalid, subject, EventsPrefix)
	}
	tenant, eventType, ok = strings.Cut(rest, ".")
	if !ok {
		return "", "", fmt.Errorf("%w event subject %q: no event type", ErrInvalid, subject)
	}
	if err := ValidateToken(tenant); err != nil {
		return "", "", fmt.Errorf("event subject tenant: %w", err)
	}
	if err := ValidateEventType(eventType); err != nil {
		return "", "", err
	}
	return tenant, eventType, nil
}

// ParseStream returns the key (workflow or task execution id) of a generic stream subject. It returns an error wrapping
// ErrInvalid when subject is not a valid generic stream subject.
func ParseStream(subject string) (string, error) {
	key, ok := strings.CutPrefix(subject, StreamsPrefix)
	if !ok {
		return "", fmt.Errorf("%w stream subject %q: does not start with %q", ErrInvalid, subject, StreamsPrefix)
	}
	if err := ValidateToken(key); err != nil {
		return "", fmt.Errorf("stream subject: %w", err)
	}
	return key, nil
}

// EventFilter returns the NATS subscription subject for the lifecycle events of tenant whose event type starts with
// typePrefix (a plain string prefix, as EventPattern.Matches uses it; "" for every type).
//
// The subject is a superset of what the prefix accepts, never a different semantic: only the tokens of the prefix that are
// certainly complete (followed by a dot) narrow the subject, and the rest becomes '>'. So "workflow.comp" gives
// flovyn.events.<tenant>.workflow.> (which holds workflow.completed), and "workflow" gives flovyn.events.<tenant>.>
// (which also holds "workflowx.y", for the caller's own prefix check to drop). A prefix that no valid event type can start
// with still gives a valid, tenant-wide subject; the caller's check drops everything. It returns an error wrapping
// ErrInvalid only when tenant is not a valid token.
func EventFilter(tenant, typePrefix string) (string, error) {
	if err := ValidateToken(tenant); err != nil {
		return "", fmt.Errorf("tenant: %w", err)
	}
	base := EventsPrefix + tenant + "."
	complete := typePrefix[:strings.LastIndexByte(typePrefix, '.')+1] // "" or tokens each followed by a dot
	if complete == "" || len(complete) > MaxEventTypeBytes || ValidateEventType(complete[:len(complete)-1]) != nil {
		return base + ">", nil
	}
	return base + complete + ">", nil
}

// Covers reports whether the NATS subject filter captures every subject that sub matches (sub may itself be a filter
// with the wildcards '*' and '>'): each token of filter is '>' (which takes the rest, at least one token), '*' (any one
// token that is not '>'), or the same literal token.
func Covers(filter, sub string) bool {
	for {
		ft, frest, fmore := strings.Cut(filter, ".")
		st, srest, smore := strings.Cut(sub, ".")
		switch {
		case ft == ">":
			return st != ""
		case st == ">":
			return false // sub reaches deeper than anything but '>' can
		case ft == "*":
			if st == "" {
				return false
			}
		case ft != st:
			return false
		}
		if !fmore || !smore {
			return fmore == smore
		}
		filter, sub = frest, srest
	}
}
