package config

import (
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// ErrInvalid is the family of every configuration problem; check it with errors.Is. The concrete errors are
// *Error values, joined with errors.Join when there are several.
var ErrInvalid = errors.New("config: invalid configuration")

// Error is one problem in a configuration.
type Error struct {
	// File is the configuration file, set by Load.
	File string
	// Line is the 1-based line of the offending key in the file; 0 when unknown (the value is a default, or the Config
	// was built in code).
	Line int
	// Key is the dotted YAML path of the offending key, such as "nats.urls" or "auth.tokens[0].sha256"; empty for a
	// problem with the whole document.
	Key string
	// Msg is the message, naming the key and saying how to fix it.
	Msg string
}

// Error returns the message prefixed with the file and line when they are known, as in
// `config.yaml line 3: unknown key "listn" in http (known: listen, ...)`.
func (e *Error) Error() string {
	switch {
	case e.File != "" && e.Line > 0:
		return fmt.Sprintf("%s line %d: %s", e.File, e.Line, e.Msg)
	case e.File != "":
		return e.File + ": " + e.Msg
	case e.Line > 0:
		return fmt.Sprintf("line %d: %s", e.Line, e.Msg)
	}
	return e.Msg
}

// Unwrap returns ErrInvalid.
func (e *Error) Unwrap() error { return ErrInvalid }

func joinConfigErrors(errs []*Error) error {
	if len(errs) == 0 {
		return nil
	}
	if len(errs) == 1 {
		return errs[0]
	}
	list := make([]error, len(errs))
	for i, e := range errs {
		list[i] = e
	}
	return errors.Join(list...)
}

// cfgKeyIndex remembers where each key of a YAML document is, and which configuration section holds it, to name keys
// and lines in errors.
type cfgKeyIndex struct {
	entries []cfgKeyEntry
}

type cfgKeyEntry struct {
	path      string       // dotted path: "http.listen", "auth.tokens[0].name"; an item of a list is "auth.tokens[0]"
	parent    string       // path of the section holding the key, "" at the top level
	key       string       // the key itself; "" for a list item
	section   reflect.Type // struct type of the section holding the key; nil when unknown
	line      int          // line of the key (of the item, for a list item)
	valueLine int          // line of the value
	value     string       // the value, when a scalar
}

// walk records the keys of n, a node decoded into type t at path.
func (x *cfgKeyIndex) walk(n *yaml.Node, t reflect.Type, path string) {
	n = cfgResolveAlias(n)
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch {
	case n.Kind == yaml.MappingNode && t != nil && t.Kind() == reflect.Struct:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], cfgResolveAlias(n.Content[i+1])
			if k.Value == "<<" { // a merge key: its mappings are this section's keys
				x.walk(v, t, path)
				continue
			}
			child := cfgJoinPath(path, k.Value)
			x.entries = append(x.entries, cfgKeyEntry{path: child, parent: path, key: k.Value, section: t,
				line: k.Line, valueLine: v.Line, value: v.Value})
			if f, ok := cfgField(t, k.Value); ok {
				x.walk(v, f.Type, child)
			}
		}
	case n.Kind == yaml.SequenceNode && t != nil && t.Kind() == reflect.Slice:
		for i, item := range n.Content {
			item = cfgResolveAlias(item)
			child := fmt.Sprintf("%s[%d]", path, i)
			x.entries = append(x.entries, cfgKeyEntry{path: child, parent: path, line: item.Line,
				valueLine: item.Line, value: item.Value})
			x.walk(item, t.Elem(), child)
		}
	}
}

// lineOf returns the line of key, or of its nearest enclosing key present in the document; 0 when none is.
func (x *cfgKeyIndex) lineOf(key string) int {
	for key != "" {
		for _, e := range x.entries {
			if e.path == key {
				return e.line
			}
		}
		i := strings.LastIndexAny(key, ".[")
		if i < 0 {
			return 0
		}
		key = key[:i]
	}
	return 0
}

var (
	cfgLineMsg      = regexp.MustCompile(`^line (\d+): (.*)$`)
	cfgUnknownMsg   = regexp.MustCompile(`^field (.+) not found in type \S+$`)
	cfgCannotMsg    = regexp.MustCompile("^cannot unmarshal (!!\\w+)(?: `(.*)`)? into (.+)$")
	cfgDuplicateMsg = regexp.MustCompile(`^mapping key "(.*)" already defined at line \d+$`)
)

// describe turns a decoding error of yaml.v3 into ConfigErrors naming the key and its line.
func (x *cfgKeyIndex) describe(err error) []*Error {
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		return []*Error{cfgSyntaxError(err)}
	}
	var errs []*Error
	for _, s := range te.Errors {
		m := cfgLineMsg.FindStringSubmatch(s)
		if m == nil {
			errs = append(errs, &Error{Msg: s})
			continue
		}
		line, _ := strconv.Atoi(m[1])
		msg := m[2]
		if u := cfgUnknownMsg.FindStringSubmatch(msg); u != nil {
			errs = append(errs, x.unknownKey(line, u[1]))
			continue
		}
		if d := cfgDuplicateMsg.FindStringSubmatch(msg); d != nil {
			e := x.find(line, func(e cfgKeyEntry) bool { return e.key == d[1] })
			path := e.path
			if path == "" {
				path = d[1]
			}
			errs = append(errs, &Error{Line: line, Key: path, Msg: path + ": is set twice; remove one of them"})
			continue
		}
		if c := cfgCannotMsg.FindStringSubmatch(msg); c != nil {
			prefix := strings.TrimSuffix(c[2], "...")
			e := x.find(line, func(e cfgKeyEntry) bool { return e.valueLine == line && strings.HasPrefix(e.value, prefix) })
			got := c[1]
			switch {
			case c[2] != "":
				got = strconv.Quote(c[2])
			case c[1] == "!!seq":
				got = "a list"
			case c[1] == "!!map":
				got = "a mapping"
			}
			errs = append(errs, &Error{Line: line, Key: e.path,
				Msg: cfgKeyPrefix(e.path) + fmt.Sprintf("%s is not valid here; want %s", got, cfgDescribeType(c[3]))})
			continue
		}
		e := x.find(line, func(e cfgKeyEntry) bool {
			return e.valueLine == line && e.value != "" &&
				(strings.Contains(msg, strconv.Quote(e.value)) || strings.Contains(msg, "`"+e.value+"`"))
		})
		errs = append(errs, &Error{Line: line, Key: e.path, Msg: cfgKeyPrefix(e.path) + msg})
	}
	return errs
}

// find returns the entry at line that matches, or else the last entry whose value is on line, or else the last entry
// whose key is on line.
func (x *cfgKeyIndex) find(line int, match func(cfgKeyEntry) bool) cfgKeyEntry {
	var byValue, byKey cfgKeyEntry
	for _, e := range x.entries {
		if (e.line == line || e.valueLine == line) && match(e) {
			return e
		}
		if e.valueLine == line {
			byValue = e
		}
		if e.line == line {
			byKey = e
		}
	}
	if byValue.path != "" {
		return byValue
	}
	return byKey
}

func (x *cfgKeyIndex) unknownKey(line int, key string) *Error {
	e := x.find(line, func(e cfgKeyEntry) bool { return e.line == line && e.key == key })
	known := "?"
	if e.section != nil {
		known = strings.Join(cfgYAMLKeys(e.section), ", ")
	}
	msg := fmt.Sprintf("unknown key %q in %s (known: %s)", key, e.parent, known)
	if e.parent == "" {
		msg = fmt.Sprintf("unknown top-level key %q (known: %s)", key, known)
	}
	path := e.path
	if path == "" {
		path = key
	}
	return &Error{Line: line, Key: path, Msg: msg}
}

func cfgKeyPrefix(path string) string {
	if path == "" {
		return ""
	}
	return path + ": "
}

// cfgDescribeType names what a Go type of the configuration wants, for error messages.
func cfgDescribeType(goType string) string {
	switch goType {
	case "int", "int64":
		return "an integer"
	case "bool", "*bool":
		return "true or false"
	case "string":
		return "a string"
	case "[]string":
		return "a list of strings"
	case "[]config.Token":
		return "a list of tokens"
	case "event.TenantKey":
		return "tenant_id or org_id"
	}
	if strings.HasPrefix(goType, "config.") {
		return "a mapping"
	}
	return goType
}

func cfgSyntaxError(err error) *Error {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	if m := cfgLineMsg.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		return &Error{Line: line, Msg: "invalid YAML: " + m[2]}
	}
	return &Error{Msg: "invalid YAML: " + msg}
}

func cfgTypeError(line int, format string, args ...any) *yaml.TypeError {
	return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: ", line) + fmt.Sprintf(format, args...)}}
}

func cfgResolveAlias(n *yaml.Node) *yaml.Node {
	for n != nil && n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	return n
}

func cfgKindName(k yaml.Kind) string {
	switch k {
	case yaml.SequenceNode:
		return "list"
	case yaml.MappingNode:
		return "mapping"
	case yaml.ScalarNode:
		return "single value"
	}
	return "document"
}

func cfgJoinPath(parent, key string) string {
	if parent == "" {
		return key
	}
	return parent + "." + key
}

// cfgYAMLKeys returns the YAML keys of struct type t, in declaration order.
func cfgYAMLKeys(t reflect.Type) []string {
	keys := make([]string, 0, t.NumField())
	for i := 0; i < t.NumField(); i++ {
		if name := cfgYAMLName(t.Field(i)); name != "" {
			keys = append(keys, name)
		}
	}
	return keys
}

func cfgField(t reflect.Type, key string) (reflect.StructField, bool) {
	for i := 0; i < t.NumField(); i++ {
		if f := t.Field(i); cfgYAMLName(f) == key {
			return f, true
		}
	}
	return reflect.StructField{}, false
}

func cfgYAMLName(f reflect.StructField) string {
	if !f.IsExported() {
		return ""
	}
	name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
	switch name {
	case "-":
		return ""
	case "":
		return strings.ToLower(f.Name)
	}
	return name
}
