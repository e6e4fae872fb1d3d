package sidecar

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/flovyn/eventhook/sidecar/bus"
	"github.com/flovyn/eventhook/sidecar/event"
)

// errTooLarge reports a body, an event or a batch over its limit (413).
type errTooLarge struct{ detail string }

func (e *errTooLarge) Error() string { return e.detail }

// errStatus is an error with its own status and message (404, 405, 415, 429, …).
type errStatus struct {
	status     int
	detail     string
	retryAfter int
}

func (e *errStatus) Error() string { return e.detail }

// problemFor maps an error to the problem a client gets. 5xx problems never carry the error's text: it may hold internals.
func problemFor(err error) (p event.Problem, internal bool) {
	var ve *event.ValidationError
	var tl *errTooLarge
	var es *errStatus
	switch {
	case errors.As(err, &ve):
		p = event.Problem{Status: http.StatusBadRequest, Detail: ve.Error(), Errors: ve.Errors}
		if len(ve.Errors) == 1 {
			p.Detail = describeField(ve.Errors[0])
		}
	case errors.As(err, &tl):
		p = event.Problem{Status: http.StatusRequestEntityTooLarge, Detail: tl.detail}
	case errors.As(err, &es):
		p = event.Problem{Status: es.status, Detail: es.detail, RetryAfter: time.Duration(es.retryAfter) * time.Second}
	case errors.Is(err, bus.ErrStoreFull):
		p = event.Problem{Status: http.StatusServiceUnavailable, RetryAfter: 5 * time.Second,
			Detail: "the event store is out of space (its disk is full, or its storage limit is reached); nothing was stored: retry once space is freed (the sidecar checks every second)"}
	case errors.Is(err, bus.ErrUnconfirmed), errors.Is(err, context.DeadlineExceeded):
		p = event.Problem{Status: http.StatusServiceUnavailable, RetryAfter: time.Second,
			Detail: "the event backend did not confirm the event in time, so it may or may not be stored: retry after a moment (the id of a lifecycle event makes the retry safe)"}
	case errors.Is(err, bus.ErrUnavailable):
		p = event.Problem{Status: http.StatusServiceUnavailable, RetryAfter: time.Second,
			Detail: "the event backend is unavailable; nothing was stored: retry after a moment (the event id makes a retry safe)"}
	case errors.Is(err, bus.ErrClosed):
		p = event.Problem{Status: http.StatusServiceUnavailable, RetryAfter: time.Second, Detail: "the sidecar is shutting down; retry on another instance"}
	case errors.Is(err, context.Canceled):
		p = event.Problem{Status: http.StatusServiceUnavailable, RetryAfter: time.Second,
			Detail: "the request ended before the event backend answered; the event may or may not be stored: retry (the id of a lifecycle event makes the retry safe)"}
	default:
		return event.Problem{Status: http.StatusInternalServerError, Detail: "internal error; see the sidecar's log"}, true
	}
	return p, false
}

func describeField(fe event.FieldError) string {
	if fe.Field == "" {
		return fe.Message
	}
	return fe.Field + ": " + fe.Message
}

// writeError answers r with the problem for err, and logs it once: 5xx at error level, other errors at debug level.
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	p, internal := problemFor(err)
	level := slog.LevelDebug
	if p.Status >= 500 {
		level = slog.LevelWarn
		if internal {
			level = slog.LevelError
		}
	}
	s.log.LogAttrs(r.Context(), level, "request failed", slog.String("method", r.Method),
		slog.String("path", r.URL.Path), slog.Int("status", p.Status), slog.Any("err", err))
	writeProblem(w, p)
}

// writeProblem writes p as application/problem+json.
func writeProblem(w http.ResponseWriter, p event.Problem) {
	if p.Type == "" {
		p.Type = "about:blank"
	}
	if p.Title == "" {
		p.Title = http.StatusText(p.Status)
	}
	h := w.Header()
	h.Set("Content-Type", "application/problem+json")
	h.Set("X-Content-Type-Options", "nosniff")
	if p.RetryAfter > 0 {
		h.Set("Retry-After", strconv.Itoa(int(p.RetryAfter/time.Second)))
	}
	writeJSON(w, p.Status, p)
}
