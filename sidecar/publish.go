package sidecar

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"strconv"
	"time"

	"github.com/flovyn/eventhook/sidecar/bus"
	"github.com/flovyn/eventhook/sidecar/event"
	"github.com/google/uuid"
)

// maxBatchBodyBytes bounds the body of a batch request, whatever max_batch × max_event_bytes would allow.
const maxBatchBodyBytes = 32 << 20

// tenantParams and tenantHeaders are the names of the tenant, each followed by its alias: in a query and in headers.
var (
	tenantParams  = [2]string{"tenant_id", "org_id"}
	tenantHeaders = [2]string{event.TenantHeader, event.OrgHeader}
)

// tenantOf reads a tenant given under a name or its alias (names) in m, a query or a header (whose keys are canonical,
// as names are). It returns the tenant and the name it was read from, or uuid.Nil and "" when neither is set. A value
// that is not a non-nil UUID, and a name and its alias that disagree, are errors naming the fields.
func tenantOf(m map[string][]string, names [2]string) (uuid.UUID, string, error) {
	var id uuid.UUID
	from := ""
	for _, name := range names {
		vs := m[name]
		if len(vs) == 0 || vs[0] == "" {
			continue
		}
		v := vs[0]
		u, err := uuid.Parse(v)
		if err != nil || len(v) != 36 || u == uuid.Nil {
			return uuid.Nil, "", event.Invalid(name, "%q is not a non-nil UUID", v)
		}
		if from != "" {
			if u != id {
				return uuid.Nil, "", event.Invalid(name, "%s disagrees with %s %s; send one of them (%s is another name of %s), "+
					"or the same tenant in both", u, from, id, name, from)
			}
			continue
		}
		id, from = u, name
	}
	return id, from, nil
}

// stored is the reply for entry i, stored as r says; id is a lifecycle event's.
func stored(i int, id string, r bus.PublishResult) event.PublishReply {
	return event.PublishReply{Index: i, ID: id, Sequence: r.Sequence, Duplicate: r.Duplicate}
}

// failed is the reply for entry i, not stored because of err.
func failed(i int, err error) event.PublishReply {
	p, _ := problemFor(err)
	return event.PublishReply{Index: i, Error: &event.Problem{Status: p.Status, Detail: p.Detail}}
}

// bodyFormat is how a request body is framed.
type bodyFormat uint8

const (
	formatJSON bodyFormat = iota
	formatNDJSON
)

// requestFormat reads the Content-Type: JSON (also when absent, or form-encoded as `curl -d` sends it), NDJSON, or 415.
func requestFormat(r *http.Request) (bodyFormat, error) {
	ct := r.Header.Get("Content-Type")
	if ct == "" {
		return formatJSON, nil
	}
	mt, _, err := mime.ParseMediaType(ct)
	switch {
	case err != nil:
	case mt == "application/json" || mt == "application/x-www-form-urlencoded":
		return formatJSON, nil
	case mt == "application/x-ndjson":
		return formatNDJSON, nil
	}
	return 0, &errStatus{status: http.StatusUnsupportedMediaType,
		detail: fmt.Sprintf("Content-Type %q is not accepted; send application/json (one event or a JSON array) or application/x-ndjson", ct)}
}

// readBody reads the whole body, up to limit bytes; more is a 413.
func readBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, error) {
	var buf bytes.Buffer
	if r.ContentLength > 0 && r.ContentLength <= limit {
		buf.Grow(int(r.ContentLength) + 1) // one allocation of the body's size, not doublings up to it
	}
	_, err := buf.ReadFrom(http.MaxBytesReader(w, r.Body, limit))
	body := buf.Bytes()
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return nil, &errTooLarge{detail: fmt.Sprintf("the body exceeds %d bytes; send smaller events or smaller batches", limit)}
	}
	var es *errStatus
	if errors.As(err, &es) { // the body budget had no room for more of it
		return nil, err
	}
	if err != nil {
		return nil, &errStatus{status: http.StatusBadRequest, detail: "reading the body failed: " + err.Error()}
	}
	return body, nil
}

// tenantFor resolves the tenant of an entry: the body's, else the Flovyn-Tenant-Id header (or its other name
// Flovyn-Org-Id), else the only tenant of the caller's token, else events.default_tenant_id. A body and a header that
// disagree are an error naming field (the body's), and so are the two headers; uuid.Nil means none was given.
func (s *Server) tenantFor(r *http.Request, body uuid.UUID, field string) (uuid.UUID, error) {
	header, name, err := tenantOf(r.Header, tenantHeaders)
	if err != nil {
		return uuid.Nil, err
	}
	switch {
	case body != uuid.Nil && header != uuid.Nil && body != header:
		return uuid.Nil, event.Invalid(field, "%s disagrees with the %s header %s; send one, or the same in both", body, name, header)
	case body != uuid.Nil:
		return body, nil
	case header != uuid.Nil:
		return header, nil
	}
	if only, ok := principalOf(r).onlyTenant(); ok {
		return only, nil
	}
	return s.defaultTenant, nil
}

// prepareEvent decodes one event, fills its tenant, stamps and validates it, and checks its encoded size. Field names
// in errors get prefix (such as "[3].").
func (s *Server) prepareEvent(r *http.Request, raw []byte, prefix string) (*event.FlovynEvent, error) {
	e, err := event.DecodeEvent(raw)
	if err == nil {
		e.TenantID, err = s.tenantFor(r, e.TenantID, "tenant_id")
	}
	if err == nil {
		e.Stamp(s.cfg.Events.DefaultSource, time.Now())
		err = e.Validate()
	}
	if err == nil {
		err = s.checkSize(e)
	}
	if err == nil {
		err = allow(r, e.TenantID, rightPublish)
	}
	return e, prefixFields(err, prefix)
}

// checkSize returns a 413 error when the encoded event exceeds the limit; it encodes only when a cheap bound says it may.
func (s *Server) checkSize(e *event.FlovynEvent) error {
	limit := s.maxEventBytes()
	bound := 320 + len(e.Data) + len(e.EventType) + 6*len(e.Source)
	if e.CorrelationID != nil {
		bound += 6 * len(*e.CorrelationID)
	}
	if bound <= limit {
		return nil
	}
	if n := len(e.AppendJSONAs(nil, s.cfg.Events.TenantKey)); n > limit {
		return &errTooLarge{detail: fmt.Sprintf("the encoded event is %d bytes; at most %d are allowed (events.max_event_bytes)", n, limit)}
	}
	return nil
}

// maxEventBytes is events.max_event_bytes, lowered to the backend's max payload minus 4 KiB kept for headers.
func (s *Server) maxEventBytes() int {
	limit := s.cfg.Events.MaxEventBytes
	if pl, ok := s.bus.(bus.PayloadLimiter); ok {
		limit = min(limit, pl.MaxPayload()-4096)
	}
	return limit
}

func prefixFields(err error, prefix string) error {
	var ve *event.ValidationError
	var es *errStatus
	if prefix != "" && errors.As(err, &es) {
		return &errStatus{status: es.status, detail: prefix[:len(prefix)-1] + ": " + es.detail, retryAfter: es.retryAfter}
	}
	if prefix == "" || !errors.As(err, &ve) {
		return err
	}
	out := &event.ValidationError{Errors: make([]event.FieldError, len(ve.Errors))}
	for i, fe := range ve.Errors {
		out.Errors[i] = event.FieldError{Field: prefix + fe.Field, Message: fe.Message}
		if fe.Field == "" {
			out.Errors[i].Field = prefix[:len(prefix)-1]
		}
	}
	return out
}

func (s *Server) reject(err error) {
	p, _ := problemFor(err)
	reason := "invalid"
	switch p.Status {
	case http.StatusRequestEntityTooLarge:
		reason = "too_large"
	case http.StatusUnsupportedMediaType:
		reason = "unsupported_media_type"
	case http.StatusServiceUnavailable, http.StatusInternalServerError:
		reason = "unavailable"
	}
	s.metrics.rejected.WithLabelValues(reason).Inc()
}

// publishCtx bounds a publish by the request and the configuration's publish timeout.
func (s *Server) publishCtx(r *http.Request) (context.Context, context.CancelFunc) {
	if d := s.cfg.PublishTimeout(); d > 0 {
		return context.WithTimeout(r.Context(), d)
	}
	return context.WithCancel(r.Context())
}

func (s *Server) handlePublishEvent(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	e, err := s.readEvent(w, r)
	if err == nil {
		var res bus.PublishResult
		ctx, cancel := s.publishCtx(r)
		res, err = s.bus.PublishEvent(ctx, e)
		cancel()
		if err == nil {
			s.countPublished("event", res)
			s.metrics.publishDuration.WithLabelValues("event").Observe(time.Since(start).Seconds())
			var buf [96]byte
			b := append(buf[:0], `{"id":"`...)
			b = event.AppendUUID(b, e.ID)
			b = append(b, `","sequence":`...)
			b = strconv.AppendUint(b, res.Sequence, 10)
			b = append(b, `,"duplicate":`...)
			b = strconv.AppendBool(b, res.Duplicate)
			b = append(b, "}\n"...)
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusAccepted)
			_, _ = w.Write(b)
			return
		}
	}
	s.reject(err)
	s.writeError(w, r, err)
}

func (s *Server) readEvent(w http.ResponseWriter, r *http.Request) (*event.FlovynEvent, error) {
	format, err := requestFormat(r)
	if err != nil {
		return nil, err
	}
	body, err := readBody(w, r, s.eventBodyLimit())
	if err != nil {
		return nil, err
	}
	if format == formatNDJSON || firstByte(body) == '[' {
		return nil, event.Invalid("", "this endpoint takes one JSON object; send several to /v1/events/batch")
	}
	return s.prepareEvent(r, body, "")
}

func (s *Server) countPublished(kind string, r bus.PublishResult) {
	if r.Duplicate {
		s.metrics.duplicates.Inc()
		return
	}
	s.metrics.published.WithLabelValues(kind).Inc()
}

func firstByte(b []byte) byte {
	b = bytes.TrimLeft(b, " \t\r\n")
	if len(b) == 0 {
		return 0
	}
	return b[0]
}

// splitEntries splits a batch body into its entries: a JSON array, or one JSON value per line (NDJSON; blank lines
// skipped). A body that starts with '[' is an array whatever the Content-Type says.
func splitEntries(body []byte, limit int) ([]json.RawMessage, error) {
	var entries []json.RawMessage
	if firstByte(body) == '[' {
		dec := json.NewDecoder(bytes.NewReader(body))
		if err := dec.Decode(&entries); err != nil {
			return nil, event.DescribeJSONError(err)
		}
	} else {
		for line := range bytes.SplitSeq(body, []byte("\n")) {
			if line = bytes.TrimSpace(line); len(line) > 0 {
				entries = append(entries, line)
			}
			if len(entries) > limit {
				break
			}
		}
	}
	if len(entries) == 0 {
		return nil, event.Invalid("", "the batch is empty; send a JSON array or one JSON object per line")
	}
	if len(entries) > limit {
		return nil, &errTooLarge{detail: fmt.Sprintf("the batch holds more than %d entries (events.max_batch); split it", limit)}
	}
	return entries, nil
}

// eventBodyLimit is the most /v1/events reads of a body: an event, with room for white space.
func (s *Server) eventBodyLimit() int64 { return int64(s.maxEventBytes()) + 64<<10 }

// batchLimit is the most /v1/events/batch and /v1/streams read of a body.
func (s *Server) batchLimit() int64 {
	return min(int64(s.cfg.Events.MaxBatch)*int64(s.maxEventBytes()+1024), maxBatchBodyBytes)
}

func (s *Server) handlePublishBatch(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	events, err := s.readBatch(w, r)
	if err != nil {
		s.reject(err)
		s.writeError(w, r, err)
		return
	}
	ctx, cancel := s.publishCtx(r)
	defer cancel()
	results, errs := s.publishBatch(ctx, events, nil)
	out := make([]event.PublishReply, len(events))
	var firstErr error
	for i, e := range events {
		if errs[i] != nil {
			out[i] = failed(i, errs[i])
			firstErr = cmp.Or(firstErr, errs[i])
			continue
		}
		s.countPublished("event", results[i])
		out[i] = stored(i, e.ID.String(), results[i])
	}
	if firstErr != nil {
		s.writePartial(w, firstErr, out, true)
		return
	}
	s.metrics.publishDuration.WithLabelValues("batch").Observe(time.Since(start).Seconds())
	writeJSON(w, http.StatusAccepted, map[string]any{"results": out})
}

// writePartial answers a request of several entries some of which the backend did not store: the problem of the first
// failure (503 for a backend failure), with every entry's result, so the client knows which were stored. A retry of
// the whole request is safe when every entry is a lifecycle event (dedup by id); stream events have no id, so only
// the entries that failed should be sent again.
func (s *Server) writePartial(w http.ResponseWriter, firstErr error, results []event.PublishReply, retryAll bool) {
	s.reject(firstErr)
	p, _ := problemFor(firstErr)
	advice := "a retry of the whole request is safe"
	if !retryAll {
		advice = "send again only the entries with an error: stream events have no id to deduplicate a retry"
	}
	p.Detail = "some entries were not stored (see results; " + advice + "): " + p.Detail
	p.Results = results
	writeProblem(w, p)
}

// readBatch reads and validates every entry of a batch; any invalid entry fails the whole batch with every error.
func (s *Server) readBatch(w http.ResponseWriter, r *http.Request) ([]*event.FlovynEvent, error) {
	if _, err := requestFormat(r); err != nil {
		return nil, err
	}
	body, err := readBody(w, r, s.batchLimit())
	if err != nil {
		return nil, err
	}
	entries, err := splitEntries(body, s.cfg.Events.MaxBatch)
	if err != nil {
		return nil, err
	}
	events := make([]*event.FlovynEvent, len(entries))
	all := &event.ValidationError{}
	for i, raw := range entries {
		e, err := s.prepareEvent(r, raw, "["+strconv.Itoa(i)+"].")
		var ve *event.ValidationError
		switch {
		case errors.As(err, &ve):
			all.Errors = append(all.Errors, ve.Errors...)
		case err != nil:
			return nil, err // too large: the whole request is
		}
		events[i] = e
	}
	if len(all.Errors) > 0 {
		return nil, all
	}
	return events, nil
}

// publishBatch publishes the entries of a request (see BatchPublisher), pipelined when the backend can; after a failure
// of a one-by-one backend, the rest are not attempted.
func (s *Server) publishBatch(ctx context.Context, events []*event.FlovynEvent, streams []*event.StreamEvent) ([]bus.PublishResult, []error) {
	if bp, ok := s.bus.(bus.BatchPublisher); ok {
		return bp.PublishBatch(ctx, events, streams)
	}
	n := max(len(events), len(streams))
	results := make([]bus.PublishResult, n)
	errs := make([]error, n)
	for i := range n {
		if i < len(events) && events[i] != nil {
			results[i], errs[i] = s.bus.PublishEvent(ctx, events[i])
		} else {
			results[i], errs[i] = s.bus.PublishStream(ctx, streams[i])
		}
		if errs[i] != nil {
			for j := i + 1; j < len(errs); j++ {
				errs[j] = errs[i] // not attempted: the same error
			}
			break
		}
	}
	return results, errs
}

// streamEntry is one validated entry of a /v1/streams request: a stream event, or the lifecycle event a legacy
// StateEventPayload became.
type streamEntry struct {
	stream *event.StreamEvent
	event  *event.FlovynEvent
}

func (s *Server) handlePublishStreams(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	entries, single, err := s.readStreams(w, r)
	if err != nil {
		s.reject(err)
		s.writeError(w, r, err)
		return
	}
	ctx, cancel := s.publishCtx(r)
	defer cancel()
	events := make([]*event.FlovynEvent, len(entries))
	streams := make([]*event.StreamEvent, len(entries))
	for i, en := range entries {
		events[i], streams[i] = en.event, en.stream
	}
	results, errs := s.publishBatch(ctx, events, streams)
	out := make([]event.PublishReply, len(entries))
	var firstErr error
	for i, en := range entries {
		switch {
		case errs[i] != nil:
			out[i] = failed(i, errs[i])
			firstErr = cmp.Or(firstErr, errs[i])
		case en.event != nil:
			s.countPublished("event", results[i])
			out[i] = stored(i, en.event.ID.String(), results[i])
			out[i].ConvertedTo = en.event.EventType
		default:
			s.countPublished("stream", results[i])
			out[i] = stored(i, "", results[i])
		}
	}
	switch {
	case firstErr != nil && single:
		s.reject(firstErr)
		s.writeError(w, r, firstErr)
		return
	case firstErr != nil:
		s.writePartial(w, firstErr, out, allLifecycle(entries))
		return
	}
	s.metrics.publishDuration.WithLabelValues("stream").Observe(time.Since(start).Seconds())
	if single {
		out[0].Index = -1 // a single entry: no index
		writeJSON(w, http.StatusAccepted, out[0])
		return
	}
	writeJSON(w, http.StatusAccepted, map[string]any{"results": out})
}

// allLifecycle reports whether every entry became a lifecycle event (a legacy payload), which dedup makes safe to retry.
func allLifecycle(entries []streamEntry) bool {
	for _, en := range entries {
		if en.event == nil {
			return false
		}
	}
	return true
}

// readStreams reads one stream event or several, resolving the tenant and converting legacy lifecycle payloads.
func (s *Server) readStreams(w http.ResponseWriter, r *http.Request) ([]streamEntry, bool, error) {
	format, err := requestFormat(r)
	if err != nil {
		return nil, false, err
	}
	body, err := readBody(w, r, s.batchLimit())
	if err != nil {
		return nil, false, err
	}
	raws := []json.RawMessage{body}
	single := format == formatJSON && firstByte(body) != '['
	if !single {
		if raws, err = splitEntries(body, s.cfg.Events.MaxBatch); err != nil {
			return nil, false, err
		}
	}
	tenant, err := s.tenantFor(r, uuid.Nil, event.TenantHeader)
	if err == nil && tenant == uuid.Nil {
		err = event.Invalid(event.TenantHeader, "is required for stream events (or its other name %s, or set events.default_tenant_id)", event.OrgHeader)
	}
	if err == nil {
		err = allow(r, tenant, rightPublish)
	}
	if err != nil {
		return nil, false, err
	}
	entries := make([]streamEntry, len(raws))
	all := &event.ValidationError{}
	for i, raw := range raws {
		prefix := ""
		if !single {
			prefix = "[" + strconv.Itoa(i) + "]."
		}
		en, err := s.prepareStream(raw, tenant)
		var ve *event.ValidationError
		switch err = prefixFields(err, prefix); {
		case errors.As(err, &ve):
			all.Errors = append(all.Errors, ve.Errors...)
		case err != nil:
			return nil, false, err
		}
		entries[i] = en
	}
	if len(all.Errors) > 0 {
		return nil, false, all
	}
	return entries, single, nil
}

func (s *Server) prepareStream(raw []byte, tenant uuid.UUID) (streamEntry, error) {
	if len(raw) > s.maxEventBytes() {
		return streamEntry{}, &errTooLarge{detail: fmt.Sprintf("a stream event is %d bytes; at most %d are allowed", len(raw), s.maxEventBytes())}
	}
	se, err := event.DecodeStreamEvent(raw)
	if err != nil {
		return streamEntry{}, err
	}
	se.TenantID = tenant
	p := se.Legacy()
	if p == nil {
		if se.TimestampMs == 0 {
			se.TimestampMs = time.Now().UnixMilli()
		}
		return streamEntry{stream: se}, nil
	}
	e, known, err := event.LegacyToEvent(se, p) // before any stamping: a retry of the same bytes gets the same id
	if err != nil {
		return streamEntry{}, err
	}
	s.metrics.legacy.WithLabelValues(strconv.FormatBool(known)).Inc()
	e.Stamp(s.cfg.Events.DefaultSource, time.Now())
	if err := e.Validate(); err != nil {
		return streamEntry{}, err
	}
	return streamEntry{event: e}, s.checkSize(e)
}
