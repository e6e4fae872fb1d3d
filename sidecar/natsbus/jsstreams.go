package natsbus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/flovyn/eventhook/subjects"
	"github.com/nats-io/nats.go/jetstream"
)

// The streams at start: eventhook shares its NATS cluster with other writers. Flovyn's own server creates
// FLOVYN_STREAMS itself (memory storage, 1h max age) and purges a workflow's subject after the workflow ends, so a
// stream of a configured name may exist before eventhook starts, with settings of its owner's choosing.
//
// With jetstream.manage_streams true (the default), a missing stream is created with the configured settings and a
// description ending in streamMark. An existing stream is adopted as it is — never deleted or recreated, whatever its
// storage — and updated as far as JetStream and the owner allow:
//
//   - its storage is kept: JetStream cannot change a stream's storage in place;
//   - the subject eventhook publishes and reads is added when the stream does not capture it (no subject is ever
//     removed, so another writer's subjects stay);
//   - on the events stream, a duplicate window shorter than jetstream.duplicate_window is raised to it (retried
//     publishes rely on it; a longer one is kept);
//   - on a stream eventhook created (its description ends in streamMark), the configured max age, max bytes (events),
//     replicas and duplicate window, direct gets and limits retention are applied too;
//   - on a stream eventhook did not create, nothing else is changed. Its max age, size, replicas, retention and direct
//     gets are its owner's: the owner sized them (a memory stream's max age is memory), its own start-up would set them
//     back (so they would flip at every restart of either writer), and lowering them would delete data it serves.
//     What that stream holds is the retention eventhook serves: a cursor older than it gets an expired gap.
//
// If JetStream refuses the update, eventhook tries again with only the subject and the duplicate window, and adopts
// the stream unchanged if that is refused too. Every setting left different from the configuration is logged once,
// at warn level (direct gets at info: reads then go through the stream leader), naming the stream, the setting, both
// values and why.
//
// With manage_streams false nothing is created or changed; the differences are logged the same way.
//
// Either way the start fails, with an error naming the stream, the setting, what it is and what is needed, only for
// what eventhook cannot work correctly without: a stream that does not capture the subjects eventhook publishes and
// reads, or an events stream whose duplicate window is shorter than jetstream.duplicate_window.

// streamMark ends the description of every stream eventhook creates; a stream whose description ends with it is
// eventhook's own, and follows the configuration.
const streamMark = "(eventhook)"

// jsStreamSpec is one stream eventhook uses.
type jsStreamSpec struct {
	want jetstream.StreamConfig // what eventhook creates
	// need is the subject filter the stream must capture: every subject eventhook publishes and reads on it.
	need string
	// needDup is set when the duplicate window must be at least want.Duplicates (the events stream: publish retries
	// rely on it).
	needDup bool
	// maxBytes is set when max bytes is a setting of the configuration (the events stream).
	maxBytes bool
	// storageKey and maxAgeKey are the configuration keys of the stream's storage and max age ("" for a storage the
	// configuration does not choose).
	storageKey, maxAgeKey string
}

// jsStreamSpecs returns the three streams: events, index, generic streams, in that order.
func jsStreamSpecs(o *Options) []jsStreamSpec {
	j := &o.Streams
	dup := o.Feed.DedupWindow
	specs := []jsStreamSpec{
		{want: jetstream.StreamConfig{Name: j.EventsStream, Subjects: []string{subjects.AllEvents},
			Storage: jetstream.FileStorage, MaxAge: j.EventsMaxAge, MaxBytes: j.EventsMaxBytes, Replicas: j.Replicas,
			Duplicates: dup, AllowDirect: true, Description: "Flovyn lifecycle events " + streamMark},
			need: subjects.AllEvents, needDup: true, maxBytes: true, maxAgeKey: "jetstream.events_max_age"},
		{want: jetstream.StreamConfig{Name: indexStreamName(j), Subjects: []string{IndexPrefix + ">"},
			Storage: jetstream.FileStorage, MaxAge: j.EventsMaxAge, Replicas: j.Replicas, Duplicates: dup,
			AllowDirect: true, Description: "per-workflow and per-task index of " + j.EventsStream + " " + streamMark},
			need: IndexPrefix + ">", maxAgeKey: "jetstream.events_max_age"},
		// Generic stream subjects have exactly one token after the prefix (the workflow or task id), so a stream on
		// flovyn.streams.workflow.* captures all of them.
		{want: jetstream.StreamConfig{Name: j.StreamsStream, Subjects: []string{subjects.AllStreams},
			Storage: storageType(j.StreamsStorage), MaxAge: j.StreamsMaxAge, Replicas: j.Replicas,
			Duplicates: min(dup, j.StreamsMaxAge), AllowDirect: true,
			Description: "Flovyn generic streams: tokens, progress, data, errors " + streamMark},
			need: subjects.StreamsPrefix + "*", storageKey: "jetstream.streams_storage", maxAgeKey: "jetstream.streams_max_age"},
	}
	if o.Conn.Embedded && specs[2].want.Storage == jetstream.MemoryStorage {
		// The embedded server holds at most embeddedMaxMemory in memory: bounded below it, the stream gives up its
		// oldest events (retention: a cursor into them gets an expired gap) rather than refusing publishes when full.
		specs[2].want.MaxBytes = embeddedMaxMemory * 3 / 4
	}
	return specs
}

// storageType maps jetstream.streams_storage to JetStream's storage type (Validate accepts memory and file only).
func storageType(s string) jetstream.StorageType {
	if s == "file" {
		return jetstream.FileStorage
	}
	return jetstream.MemoryStorage
}

// ensureStreams creates, adopts or verifies the three streams (see the comment at the top of this file) and logs what
// it leaves different from the configuration. It returns an error naming the stream when one is missing (with
// manage_streams false), cannot be created, or lacks what eventhook cannot work without.
func ensureStreams(ctx context.Context, js jetstream.JetStream, o Options, log *slog.Logger) (events, index, streams jetstream.Stream, err error) {
	manage := !o.Streams.VerifyOnly
	var out []jetstream.Stream
	for _, spec := range jsStreamSpecs(&o) {
		s, err := ensureStream(ctx, js, spec, manage, log)
		if err != nil {
			return nil, nil, nil, err
		}
		out = append(out, s)
	}
	return out[0], out[1], out[2], nil
}

// ensureStream creates, adopts or verifies one stream; see ensureStreams.
func ensureStream(ctx context.Context, js jetstream.JetStream, spec jsStreamSpec, manage bool, log *slog.Logger) (jetstream.Stream, error) {
	name := spec.want.Name
	s, err := js.Stream(ctx, name)
	if !manage {
		if err != nil {
			return nil, fmt.Errorf("stream %s (jetstream.manage_streams is false, so it must exist): %w", name, err)
		}
		have := s.CachedInfo().Config
		logStreamDiffs(ctx, log, spec, have, isOwnStream(have), "jetstream.manage_streams is false: eventhook changes no stream")
		return s, checkStream(spec, have, nil)
	}
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		s, err = js.CreateStream(ctx, spec.want)
		if err == nil {
			log.LogAttrs(ctx, slog.LevelInfo, "stream created", slog.String("stream", name),
				slog.String("storage", storageName(spec.want.Storage)), slog.Any("subjects", spec.want.Subjects))
			return s, nil
		}
		if !errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			return nil, fmt.Errorf("create stream %s: %w", name, err)
		}
		s, err = js.Stream(ctx, name) // another writer created it meanwhile: adopt it
	}
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", name, err)
	}
	have := s.CachedInfo().Config
	own := isOwnStream(have)
	log.LogAttrs(ctx, slog.LevelInfo, "stream adopted", slog.String("stream", name),
		slog.String("storage", storageName(have.Storage)), slog.Bool("created_by_eventhook", own))
	why := "the stream was not created by eventhook (its description does not end in " + streamMark + "): its " +
		"owner's setting is kept; eventhook adds only its subject and raises only the events stream's duplicate window"
	if own {
		why = ""
	}
	// The configured update first; if JetStream refuses it, only what eventhook needs; if that is refused too, nothing.
	var refused error
	full, needed := planUpdate(spec, have, own), planUpdate(spec, have, false)
	for i, plan := range []jetstream.StreamConfig{full, needed} {
		if streamConfigEqual(plan, have) || (i == 1 && streamConfigEqual(plan, full)) {
			break // nothing (more) to change, or the same update again
		}
		updated, err := js.UpdateStream(ctx, plan)
		if err == nil {
			s, have = updated, updated.CachedInfo().Config
			break
		}
		if refused == nil {
			refused = err
		}
	}
	if refused != nil && own {
		why = "JetStream refused the update: " + refused.Error()
	}
	if refused != nil {
		log.LogAttrs(ctx, slog.LevelWarn, "stream update refused; adopting the stream", slog.String("stream", name),
			slog.Any("err", refused))
	}
	logStreamDiffs(ctx, log, spec, have, own, why)
	return s, checkStream(spec, have, refused)
}

// isOwnStream reports whether eventhook created the stream.
func isOwnStream(c jetstream.StreamConfig) bool { return strings.HasSuffix(c.Description, streamMark) }

// planUpdate returns the configuration to update an existing stream to: on eventhook's own stream the configured
// settings, on another's only the subject and the duplicate window eventhook needs. The storage never changes.
func planUpdate(spec jsStreamSpec, have jetstream.StreamConfig, own bool) jetstream.StreamConfig {
	want := spec.want
	upd := have
	upd.Subjects = slices.Clone(have.Subjects)
	if !capturesSubject(have.Subjects, spec.need) {
		for _, subj := range want.Subjects {
			if !slices.Contains(upd.Subjects, subj) {
				upd.Subjects = append(upd.Subjects, subj)
			}
		}
	}
	if spec.needDup && upd.Duplicates < want.Duplicates {
		upd.Duplicates = want.Duplicates
	}
	if own {
		upd.MaxAge, upd.Replicas, upd.Duplicates = want.MaxAge, want.Replicas, want.Duplicates
		if spec.maxBytes {
			upd.MaxBytes = want.MaxBytes
		}
		upd.AllowDirect = want.AllowDirect
		upd.Retention = jetstream.LimitsPolicy
	}
	return upd
}

// streamConfigEqual reports whether two configurations agree on every setting planUpdate may change.
func streamConfigEqual(a, b jetstream.StreamConfig) bool {
	return slices.Equal(a.Subjects, b.Subjects) && a.MaxAge == b.MaxAge && a.MaxBytes == b.MaxBytes &&
		a.Replicas == b.Replicas && a.Duplicates == b.Duplicates && a.AllowDirect == b.AllowDirect &&
		a.Retention == b.Retention
}

// capturesSubject reports whether one of a stream's subjects captures every subject of the filter need.
func capturesSubject(streamSubjects []string, need string) bool {
	return slices.ContainsFunc(streamSubjects, func(s string) bool { return subjects.Covers(s, need) })
}

// streamDiff is a setting of an existing stream that differs from what eventhook would give it.
type streamDiff struct {
	setting    string
	key        string // the configuration key, "" when the configuration does not choose the setting
	have, want string
	level      slog.Level
	why        string // "" for the caller's reason
}

// diffStream lists the settings of have that differ from what eventhook would give the stream. The duplicate window
// counts on the events stream and on eventhook's own streams only (stream events carry no id to deduplicate).
func diffStream(spec jsStreamSpec, have jetstream.StreamConfig, own bool) []streamDiff {
	want := spec.want
	var out []streamDiff
	if have.Storage != want.Storage {
		key := spec.storageKey
		why := "JetStream cannot change a stream's storage in place"
		switch {
		case !own:
			why += "; the stream belongs to another writer, which chose its storage (match it in the configuration, " +
				"or have the stream's owner recreate it)"
		case key == "":
			why += "; eventhook creates this stream on file storage: to move it, delete it (its messages are lost) " +
				"and restart eventhook"
		default:
			why += "; to change it, delete the stream (its messages are lost) and restart eventhook, which creates " +
				"it again with " + key
		}
		out = append(out, streamDiff{setting: "storage", key: key, have: storageName(have.Storage),
			want: storageName(want.Storage), level: slog.LevelWarn, why: why})
	}
	if have.MaxAge != want.MaxAge {
		out = append(out, streamDiff{setting: "max_age", key: spec.maxAgeKey, have: ageName(have.MaxAge),
			want: ageName(want.MaxAge), level: slog.LevelWarn})
	}
	if spec.maxBytes && have.MaxBytes != want.MaxBytes && !(have.MaxBytes <= 0 && want.MaxBytes <= 0) {
		out = append(out, streamDiff{setting: "max_bytes", key: "jetstream.events_max_bytes",
			have: fmt.Sprint(have.MaxBytes), want: fmt.Sprint(want.MaxBytes), level: slog.LevelWarn})
	}
	if max(have.Replicas, 1) != want.Replicas {
		out = append(out, streamDiff{setting: "replicas", key: "jetstream.replicas", have: fmt.Sprint(max(have.Replicas, 1)),
			want: fmt.Sprint(want.Replicas), level: slog.LevelWarn})
	}
	// Missing subjects and a duplicate window too short for the events stream are errors (checkStream), not logged.
	if (spec.needDup || own) && have.Duplicates != want.Duplicates && !(spec.needDup && have.Duplicates < want.Duplicates) {
		out = append(out, streamDiff{setting: "duplicate_window", key: "jetstream.duplicate_window",
			have: have.Duplicates.String(), want: want.Duplicates.String(), level: slog.LevelWarn})
	}
	if have.Retention != jetstream.LimitsPolicy {
		out = append(out, streamDiff{setting: "retention", have: strings.ToLower(have.Retention.String()), want: "limits",
			level: slog.LevelWarn})
	}
	if !have.AllowDirect {
		out = append(out, streamDiff{setting: "allow_direct", have: "false", want: "true", level: slog.LevelInfo,
			why: "direct gets are off, so reads by sequence go through the stream leader"})
	}
	return out
}

// logStreamDiffs logs each setting of the stream left different from the configuration, once, with why.
func logStreamDiffs(ctx context.Context, log *slog.Logger, spec jsStreamSpec, have jetstream.StreamConfig, own bool, why string) {
	for _, d := range diffStream(spec, have, own) {
		reason := d.why
		if reason == "" {
			reason = why
		}
		if reason == "" {
			reason = "unknown" // an update that JetStream accepted but did not apply
		}
		attrs := []slog.Attr{slog.String("stream", spec.want.Name), slog.String("setting", d.setting),
			slog.String("have", d.have), slog.String("want", d.want), slog.String("why", reason)}
		if d.key != "" {
			attrs = append(attrs, slog.String("key", d.key))
		}
		log.LogAttrs(ctx, d.level, "stream setting not applied", attrs...)
	}
}

// checkStream returns an error naming the stream, the setting, what it is and what is needed when the stream lacks
// what eventhook cannot work correctly without; refused, when not nil, is why an update that would have fixed it
// failed.
func checkStream(spec jsStreamSpec, have jetstream.StreamConfig, refused error) error {
	var problems []string
	if !capturesSubject(have.Subjects, spec.need) {
		problems = append(problems, fmt.Sprintf("subjects %q do not capture %s, where eventhook publishes and reads; "+
			"add %q to the stream's subjects", have.Subjects, spec.need, spec.want.Subjects[0]))
	}
	if spec.needDup && have.Duplicates < spec.want.Duplicates {
		problems = append(problems, fmt.Sprintf("duplicate window %v is shorter than jetstream.duplicate_window %v, "+
			"which retried publishes rely on; raise the stream's duplicate window to at least %v or lower "+
			"jetstream.duplicate_window", have.Duplicates, spec.want.Duplicates, spec.want.Duplicates))
	}
	if len(problems) == 0 {
		return nil
	}
	msg := strings.Join(problems, "; ")
	if refused != nil {
		return fmt.Errorf("stream %s: %s (updating it failed: %w)", spec.want.Name, msg, refused)
	}
	return fmt.Errorf("stream %s: %s", spec.want.Name, msg)
}

func storageName(s jetstream.StorageType) string { return strings.ToLower(s.String()) }

func ageName(d time.Duration) string {
	if d == 0 {
		return "0 (no limit)"
	}
	return d.String()
}
