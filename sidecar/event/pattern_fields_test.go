package event

import (
	"reflect"
	"strings"
	"testing"

	"github.com/google/uuid"
)

// TestPatternFieldsAreDescribed enumerates EventPattern's fields by reflection: every field but TenantID must be in
// patternFields, so that Matches, Matcher, Subject and IndexID see it. A pattern that sets only that field must have
// a Matcher (nil would widen the subscription to the whole tenant), and Matches and the Matcher must reject an event that
// differs from a matching one in that field alone; an id field must be what IndexID returns and one of the event's
// AppendIndexIDs; only a field that narrows the subject may change Subject.
func TestPatternFieldsAreDescribed(t *testing.T) {
	tenant := uuid.New()
	described := map[string]*patternField{}
	for i := range patternFields {
		described[patternFields[i].name] = &patternFields[i]
	}
	typ := reflect.TypeOf(EventPattern{})
	if got, want := typ.NumField()-1, len(patternFields); got != want {
		t.Errorf("EventPattern has %d optional fields; patternFields describes %d", got, want)
	}
	all := AllEvents(tenant)
	wide := all.Subject()
	for i := range typ.NumField() {
		sf := typ.Field(i)
		if sf.Name == "TenantID" {
			continue
		}
		t.Run(sf.Name, func(t *testing.T) {
			f := described[sf.Name]
			if f == nil {
				t.Fatalf("EventPattern.%s is not in patternFields", sf.Name)
			}
			// An event that passes the pattern, and one that differs in this field alone.
			p := EventPattern{TenantID: tenant}
			e := ev(tenant, "task.completed.ok")
			other := *e
			// The event's field of the same name (EventType for EventTypePrefix).
			name := strings.TrimSuffix(sf.Name, "Prefix")
			pv := reflect.ValueOf(&p).Elem().Field(i)
			evv, ov := reflect.ValueOf(e).Elem().FieldByName(name), reflect.ValueOf(&other).Elem().FieldByName(name)
			if !evv.IsValid() {
				t.Fatalf("FlovynEvent has no field %s for EventPattern.%s: teach this test which field it filters", name, sf.Name)
			}
			switch sf.Type {
			case reflect.TypeOf((*uuid.UUID)(nil)):
				id, otherID := uuid.New(), uuid.New()
				pv.Set(reflect.ValueOf(&id))
				evv.Set(reflect.ValueOf(&id))
				ov.Set(reflect.ValueOf(&otherID))
			case reflect.TypeOf(""):
				pv.SetString("task.")
				evv.SetString("task.")
				ov.SetString("workflow.")
			default:
				t.Fatalf("EventPattern.%s is a %s: teach this test to set it", sf.Name, sf.Type)
			}
			if !f.set(&p) {
				t.Fatalf("patternFields[%s].set = false for a pattern that sets it", sf.Name)
			}
			m := p.Matcher()
			if m == nil {
				t.Fatalf("Matcher() = nil for a pattern on %s; want a filter", sf.Name)
			}
			if !p.Matches(e) || !m(e) {
				t.Errorf("Matches(%+v) = %v, Matcher = %v; want true", e, p.Matches(e), m(e))
			}
			if p.Matches(&other) || m(&other) {
				t.Errorf("Matches(%+v) = %v, Matcher = %v; want false (it differs in %s)", &other, p.Matches(&other), m(&other), sf.Name)
			}
			if f.index != NoID {
				if got := p.IndexID(); got.Field != f.index {
					t.Errorf("IndexID() = %+v; want the %s index", got, sf.Name)
				}
				found := false
				for _, id := range e.AppendIndexIDs(nil) {
					found = found || id.Field == f.index
				}
				if !found {
					t.Errorf("AppendIndexIDs(%+v) has no %s index", e, sf.Name)
				}
			} else if got := p.IndexID(); got.Field != NoID {
				t.Errorf("IndexID() = %+v for a pattern on %s alone; want NoID", got, sf.Name)
			}
			if narrows := p.Subject() != wide; narrows != (f.typePrefix != nil) {
				t.Errorf("Subject() = %q (tenant-wide %q) for a pattern on %s; narrows %v, want %v", p.Subject(), wide, sf.Name,
					narrows, f.typePrefix != nil)
			}
		})
	}
}
