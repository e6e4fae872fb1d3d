package event

import (
	"fmt"
	"sort"
	"strings"

	"github.com/flovyn/eventhook/subjects"
)

// TypeFilter is a parsed `types` query parameter of the SSE streams: the union of kinds of generic stream events and of lifecycle
// type filters. The zero value selects nothing; ParseTypes gives "everything" for an empty parameter.
type TypeFilter struct {
	allLifecycle bool
	exact        map[string]bool
	categories   []string // a category c selects the type c and every type under c.
	prefixes     []string // each ends with '.': every type under it
	streamKinds  [4]bool  // indexed by streamKindIndex
}

// kindNames maps the case-insensitive kind names to a stream kind, or "" for lifecycle events.
var kindNames = map[string]StreamEventType{
	"events": "", "event": "", "lifecycle": "",
	"tokens": StreamToken, "token": StreamToken,
	"progress": StreamProgress,
	"data":     StreamData,
	"errors":   StreamError, "error": StreamError,
}

// StreamKindIndex returns the index of a stream event kind, for tables indexed by kind: 0 TOKEN, 1 PROGRESS, 2 DATA, 3
// ERROR (and any other value).
func StreamKindIndex(t StreamEventType) int {
	switch t {
	case StreamToken:
		return 0
	case StreamProgress:
		return 1
	case StreamData:
		return 2
	}
	return 3
}

// typesHelp lists what the types parameter accepts, for error messages.
const typesHelp = "use a comma list of kinds (events, tokens, progress, data, errors; singular forms too), exact lifecycle " +
	"types (task.completed), categories (workflow: workflow and every type under workflow.) or prefixes (workflow.* or workflow.>)"

// ParseTypes parses a `types` parameter. An empty or absent parameter selects everything the endpoint serves; with
// lifecycleOnly (the tenant stream), a generic stream kind is an error. Errors are *ValidationError values on the field
// "types" that say what is valid.
func ParseTypes(raw string, lifecycleOnly bool) (TypeFilter, error) {
	var f TypeFilter
	if strings.TrimSpace(raw) == "" {
		f.allLifecycle = true
		if !lifecycleOnly {
			f.streamKinds = [4]bool{true, true, true, true}
		}
		return f, nil
	}
	for item := range strings.SplitSeq(raw, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		if kind, ok := kindNames[asciiLower(item)]; ok {
			if kind == "" {
				f.allLifecycle = true
				continue
			}
			if lifecycleOnly {
				return TypeFilter{}, Invalid("types", "%q is a generic stream kind, which the tenant event stream does not carry; "+
					"use lifecycle types here, or a workflow or task stream for %s", item, kind.SSEName())
			}
			f.streamKinds[StreamKindIndex(kind)] = true
			continue
		}
		if base, ok := cutWildcard(item); ok {
			if subjects.ValidateEventType(base) != nil {
				return TypeFilter{}, Invalid("types", "%q is not a valid prefix; %s", item, typesHelp)
			}
			f.prefixes = append(f.prefixes, base+".")
			continue
		}
		if subjects.ValidateEventType(item) != nil {
			return TypeFilter{}, Invalid("types", "%q is not valid; %s", item, typesHelp)
		}
		if strings.Contains(item, ".") {
			if f.exact == nil {
				f.exact = make(map[string]bool)
			}
			f.exact[item] = true
		} else {
			f.categories = append(f.categories, item)
		}
	}
	if !f.Lifecycle() && !f.Streams() {
		return TypeFilter{}, Invalid("types", "names nothing; %s", typesHelp)
	}
	return f, nil
}

// cutWildcard returns the base of "base.*" or "base.>".
func cutWildcard(item string) (string, bool) {
	if base, ok := strings.CutSuffix(item, ".*"); ok {
		return base, true
	}
	return strings.CutSuffix(item, ".>")
}

// Lifecycle reports whether the filter selects any lifecycle event.
func (f *TypeFilter) Lifecycle() bool {
	return f.allLifecycle || len(f.exact) > 0 || len(f.categories) > 0 || len(f.prefixes) > 0
}

// Streams reports whether the filter selects any generic stream kind.
func (f *TypeFilter) Streams() bool {
	return f.streamKinds != [4]bool{}
}

// MatchesType reports whether a lifecycle event of type t is selected.
func (f *TypeFilter) MatchesType(t string) bool {
	if f.allLifecycle || f.exact[t] {
		return true
	}
	for _, c := range f.categories {
		if strings.HasPrefix(t, c) && (len(t) == len(c) || t[len(c)] == '.') {
			return true
		}
	}
	for _, p := range f.prefixes {
		if strings.HasPrefix(t, p) {
			return true
		}
	}
	return false
}

// MatchesKind reports whether a generic stream event of kind k is selected.
func (f *TypeFilter) MatchesKind(k StreamEventType) bool { return f.streamKinds[StreamKindIndex(k)] }

// Prefix returns a string prefix that every selected lifecycle type starts with ("" when none is common), to narrow a
// subscription; MatchesType stays the exact test.
func (f *TypeFilter) Prefix() string {
	if f.allLifecycle {
		return ""
	}
	var all []string
	for t := range f.exact {
		all = append(all, t)
	}
	all = append(all, f.categories...)
	all = append(all, f.prefixes...)
	if len(all) == 0 {
		return ""
	}
	sort.Strings(all)
	first, last := all[0], all[len(all)-1]
	n := 0
	for n < len(first) && n < len(last) && first[n] == last[n] {
		n++
	}
	return first[:n]
}

// String gives the filter back in its canonical query form, for logs.
func (f *TypeFilter) String() string {
	var parts []string
	if f.allLifecycle {
		parts = append(parts, "events")
	}
	for _, k := range []StreamEventType{StreamToken, StreamProgress, StreamData, StreamError} {
		if f.MatchesKind(k) {
			parts = append(parts, k.SSEName())
		}
	}
	for t := range f.exact {
		parts = append(parts, t)
	}
	parts = append(parts, f.categories...)
	for _, p := range f.prefixes {
		parts = append(parts, p+"*")
	}
	sort.Strings(parts)
	return fmt.Sprint(strings.Join(parts, ","))
}
