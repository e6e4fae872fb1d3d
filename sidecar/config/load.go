package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"reflect"
	"slices"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Duration is a time.Duration read from and written to YAML as a Go duration string ("5s", "10m", "168h").
type Duration time.Duration

// D returns the duration as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// String returns the duration in Go syntax without zero trailing units: "168h" rather than "168h0m0s".
func (d Duration) String() string {
	s := time.Duration(d).String()
	if strings.HasSuffix(s, "m0s") {
		s = s[:len(s)-2]
	}
	if strings.HasSuffix(s, "h0m") {
		s = s[:len(s)-2]
	}
	return s
}

// UnmarshalYAML reads a Go duration string. A bare number other than 0 is refused: "5" is ambiguous, "5s" is not.
// A null value leaves the duration unchanged. The error is a *yaml.TypeError carrying the line.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" {
		return nil
	}
	if n.Kind != yaml.ScalarNode {
		return cfgTypeError(n.Line, "want a duration such as \"5s\", \"10m\" or \"168h\", not a %s", cfgKindName(n.Kind))
	}
	v, err := time.ParseDuration(strings.TrimSpace(n.Value))
	if err != nil {
		return cfgTypeError(n.Line, "%q is not a duration; write a Go duration such as \"5s\", \"10m\" or \"168h\"", n.Value)
	}
	*d = Duration(v)
	return nil
}

// MarshalYAML writes the duration as a string, in the form String returns.
func (d Duration) MarshalYAML() (any, error) { return d.String(), nil }

// Load reads the file at path and parses it with Parse. A read error is returned wrapped (it names the
// path); configuration problems are *Error values (ErrInvalid) whose File is path.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("load config: %w", err)
	}
	return parseConfig(data, path)
}

// Parse reads a configuration: it expands ${VAR} and ${VAR:-default} in the text (only the braced form; $$ is a
// literal $), decodes the YAML strictly (unknown keys are errors) on top of Default, then applies the defaults
// and validates. An empty document is the default configuration. Every problem found is reported, each a *Error
// (ErrInvalid) naming the key and its line, joined with errors.Join.
func Parse(data []byte) (*Config, error) {
	return parseConfig(data, "")
}

func parseConfig(data []byte, file string) (*Config, error) {
	c, errs := decodeConfig(data)
	for _, e := range errs {
		e.File = file
	}
	if len(errs) > 0 {
		return nil, joinConfigErrors(errs)
	}
	return c, nil
}

// decodeConfig reads the configuration in data and returns every mistake found, in the order of the file: the
// environment references, the keys and values YAML could not decode, and what validation finds in the rest. A
// mistake that hides the others (a YAML syntax error, a document that is not a mapping) is the only one reported.
func decodeConfig(data []byte) (*Config, []*Error) {
	text, envErrs := expandEnv(data)

	c := Default()
	c.NATS.Embedded = nil // its default depends on nats.urls: ApplyDefaults decides

	dec := yaml.NewDecoder(bytes.NewReader(text))
	var doc yaml.Node
	switch err := dec.Decode(&doc); {
	case errors.Is(err, io.EOF):
		c.ApplyDefaults() // an empty document: the defaults
		return c, nil
	case err != nil:
		return nil, append(envErrs, cfgSyntaxError(err))
	}
	var second yaml.Node
	if err := dec.Decode(&second); !errors.Is(err, io.EOF) {
		if err != nil {
			return nil, append(envErrs, cfgSyntaxError(err))
		}
		return nil, append(envErrs, &Error{Line: second.Line, Msg: "more than one YAML document; put the whole " +
			"configuration in one"})
	}
	root := cfgResolveAlias(&doc)
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = cfgResolveAlias(root.Content[0])
	}
	if root.Kind == yaml.ScalarNode && root.ShortTag() == "!!null" {
		c.ApplyDefaults()
		return c, envErrs
	}
	if root.Kind != yaml.MappingNode {
		return nil, append(envErrs, &Error{Line: root.Line, Msg: fmt.Sprintf(
			"the configuration must be a mapping of sections (%s), not a %s",
			strings.Join(cfgYAMLKeys(reflect.TypeFor[Config]()), ", "), cfgKindName(root.Kind))})
	}
	idx := &cfgKeyIndex{}
	idx.walk(root, reflect.TypeFor[Config](), "")
	for _, e := range envErrs { // name the key whose value holds the reference
		if e.Key == "" {
			if k := idx.find(e.Line, func(cfgKeyEntry) bool { return false }).path; k != "" {
				e.Key, e.Msg = k, cfgKeyPrefix(k)+e.Msg
			}
		}
	}

	strict := yaml.NewDecoder(bytes.NewReader(text))
	strict.KnownFields(true)
	var decodeErrs []*Error
	if err := strict.Decode(c); err != nil {
		var te *yaml.TypeError
		if !errors.As(err, &te) {
			return nil, append(envErrs, idx.describe(err)...)
		}
		decodeErrs = idx.describe(err) // YAML decoded the rest: validate it too
	}

	var errs []*Error
	if c.HTTP.Listen == "" && c.HTTP.UnixSocket == "" {
		// Checked before ApplyDefaults, which would fill both: both were emptied explicitly.
		errs = append(errs, cfgNoListener())
	}
	c.ApplyDefaults()
	errs = append(errs, c.validate()...)
	for _, e := range errs {
		if e.Line == 0 {
			e.Line = idx.lineOf(e.Key)
		}
	}
	// A line whose environment reference or value is already reported says nothing more by failing validation.
	reported := map[int]bool{}
	for _, e := range append(envErrs, decodeErrs...) {
		reported[e.Line] = true
	}
	all := append(envErrs, decodeErrs...)
	for _, e := range errs {
		if e.Line == 0 || !reported[e.Line] {
			all = append(all, e)
		}
	}
	slices.SortStableFunc(all, func(a, b *Error) int { return a.Line - b.Line }) // in the order of the file
	if len(all) > 0 {
		return nil, all
	}
	return c, nil
}

// YAML returns the configuration as YAML, for `eventhook config check`. Secrets are redacted: nats.token is shown as
// "<redacted>" when set, and so is the user information of a NATS URL. Without secrets, Parse of the result gives
// back the same configuration.
func (c *Config) YAML() ([]byte, error) {
	out := *c
	embedded := c.NATS.IsEmbedded()
	out.NATS.Embedded = &embedded
	if c.JetStream.ManageStreams == nil {
		manage := true
		out.JetStream.ManageStreams = &manage
	}
	if out.NATS.Token != "" {
		out.NATS.Token = cfgRedacted
	}
	if len(c.NATS.URLs) > 0 {
		out.NATS.URLs = make([]string, len(c.NATS.URLs))
		for i, u := range c.NATS.URLs {
			out.NATS.URLs[i] = cfgRedactURL(u)
		}
	}
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(&out); err != nil {
		return nil, fmt.Errorf("encode config: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("encode config: %w", err)
	}
	return buf.Bytes(), nil
}

// cfgRedactURL hides the user information of a URL (a NATS URL may carry a token or a password in it).
func cfgRedactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil || u.User == nil {
		if at := strings.LastIndex(s, "@"); at >= 0 {
			if scheme := strings.Index(s, "://"); scheme >= 0 && scheme < at {
				return s[:scheme+3] + cfgRedacted + s[at:]
			}
		}
		return s
	}
	return u.Scheme + "://" + cfgRedacted + "@" + u.Host + u.EscapedPath()
}

// expandEnv replaces ${VAR} with the variable's value (empty when unset) and ${VAR:-default} with the default when the
// variable is unset or empty; $$ is a literal $, and any other $ is left as it is (so "$2a$10$..." survives). A
// default runs to the first '}' and is not itself expanded. Malformed ${...} expressions are errors with their line.
func expandEnv(data []byte) ([]byte, []*Error) {
	if !bytes.Contains(data, []byte("$")) {
		return data, nil
	}
	var out bytes.Buffer
	out.Grow(len(data))
	var errs []*Error
	line := 1
	var quote byte   // the quote of the scalar the line is in, or 0
	comment := false // the rest of the line is a comment: written as it is
	for i := 0; i < len(data); i++ {
		b := data[i]
		switch {
		case b == '\n':
			line++
			quote, comment = 0, false
		case comment:
		case b == '#' && quote == 0 && (i == 0 || data[i-1] == ' ' || data[i-1] == '\t' || data[i-1] == '\n'):
			comment = true
		case (b == '"' || b == '\'') && quote == 0:
			quote = b
		case b == quote && (b == '\'' || data[i-1] != '\\'):
			quote = 0
		}
		if b != '$' || i+1 >= len(data) || comment {
			out.WriteByte(b)
			continue
		}
		switch data[i+1] {
		case '$':
			out.WriteByte('$')
			i++
		case '{':
			rest := data[i+2:]
			end := bytes.IndexAny(rest, "}\n")
			if end < 0 || rest[end] != '}' {
				errs = append(errs, &Error{Line: line, Msg: "unterminated \"${\"; write ${NAME} or " +
					"${NAME:-default}, or $${ for a literal \"${\""})
				out.WriteByte(b)
				continue
			}
			expr := string(rest[:end])
			name, def, hasDefault := strings.Cut(expr, ":-")
			if !cfgEnvName.MatchString(name) {
				errs = append(errs, &Error{Line: line, Msg: fmt.Sprintf("%q is not a variable reference; "+
					"write ${NAME} or ${NAME:-default}, or $${ for a literal \"${\"", "${"+expr+"}")})
			}
			v, set := os.LookupEnv(name)
			switch {
			case hasDefault && v == "":
				v = def
			case !set && cfgEnvName.MatchString(name):
				errs = append(errs, &Error{Line: line, Msg: fmt.Sprintf("the environment variable %s is not set; set "+
					"it, or write ${%s:-} for an empty default (or ${%s:-value})", name, name, name)})
			}
			out.WriteString(v)
			i += 2 + end
		default:
			out.WriteByte(b)
		}
	}
	return out.Bytes(), errs
}
