package event

import (
	"bytes"
	"strconv"
	"strings"
	"unicode/utf8"
)

// JSON text is UTF-8, and Flovyn's Rust services (serde) refuse anything else — raw bytes that are not UTF-8, and a
// \u escape of half a surrogate pair. Every body the sidecar accepts is checked before it is decoded, so that no event it
// stores or writes carries either.

// checkUTF8 returns a *ValidationError naming the first field of the JSON body data that holds invalid UTF-8 (raw, or
// as an escape of a lone surrogate): a top-level key, or for data a path inside it such as data.items[2].name. It returns
// nil for a body that is valid UTF-8 throughout. Its fast path, taken by every valid body, reads the body once.
func checkUTF8(data []byte) error {
	if utf8.Valid(data) && (bytes.IndexByte(data, '\\') < 0 || !hasLoneSurrogate(data)) {
		return nil
	}
	field := badUTF8Path(data)
	if field == "" {
		field = "(body)"
	}
	return Invalid(field, "%s", notUTF8)
}

// notUTF8 is the message of a field that is not valid UTF-8.
const notUTF8 = "is not valid UTF-8 (a byte sequence that is not UTF-8, or a \\u escape of half a surrogate pair); " +
	"JSON text must be UTF-8"

// hasLoneSurrogate reports whether a JSON text has a \uD800–\uDFFF escape that is not a high surrogate followed by an
// escaped low surrogate.
func hasLoneSurrogate(data []byte) bool {
	for i := 0; ; {
		j := bytes.IndexByte(data[i:], '\\')
		if j < 0 {
			return false
		}
		i += j
		if i+1 >= len(data) {
			return false
		}
		if data[i+1] != 'u' {
			i += 2 // an escaped character: the backslash of \\ must not start another escape
			continue
		}
		r, ok := hex4(data, i+2)
		switch {
		case !ok || r < 0xD800 || r > 0xDFFF:
			i += 2
		case r >= 0xDC00:
			return true // a low surrogate first
		default:
			if i+12 > len(data) || data[i+6] != '\\' || data[i+7] != 'u' {
				return true
			}
			if lo, ok := hex4(data, i+8); !ok || lo < 0xDC00 || lo > 0xDFFF {
				return true
			}
			i += 12
		}
	}
}

// hex4 reads the four hex digits at data[i:i+4].
func hex4(data []byte, i int) (rune, bool) {
	if i+4 > len(data) {
		return 0, false
	}
	var r rune
	for _, c := range data[i : i+4] {
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c -= 'a' - 10
		case c >= 'A' && c <= 'F':
			c -= 'A' - 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	return r, true
}

// badString reports whether the JSON string token s (quotes included) holds invalid UTF-8.
func badString(s []byte) bool {
	return !utf8.Valid(s) || (bytes.IndexByte(s, '\\') >= 0 && hasLoneSurrogate(s))
}

// badUTF8Path returns the field of the first invalid string in the object data: the key itself when the key is not
// UTF-8, the key of a scalar value, or the path inside data. It returns "" when it cannot walk the body (the decoder
// then reports its syntax).
func badUTF8Path(data []byte) string {
	i := skipSpace(data, 0)
	if i >= len(data) || data[i] != '{' {
		return ""
	}
	path, _ := badInObject(data, i, "", true)
	return path
}

// badInValue walks the JSON value at data[i] under path and returns the path of its first invalid string, and the index
// after the value (-1 when it cannot read it).
func badInValue(data []byte, i int, path string) (string, int) {
	if i >= len(data) {
		return "", -1
	}
	switch data[i] {
	case '"':
		end := skipString(data, i)
		if end < 0 {
			return "", -1
		}
		if badString(data[i:end]) {
			return path, end
		}
		return "", end
	case '{':
		return badInObject(data, i, path, false)
	case '[':
		i = skipSpace(data, i+1)
		for n := 0; ; n++ {
			if i < len(data) && data[i] == ']' {
				return "", i + 1
			}
			p, end := badInValue(data, i, path+"["+strconv.Itoa(n)+"]")
			if p != "" || end < 0 {
				return p, end
			}
			i = skipSpace(data, end)
			if i < len(data) && data[i] == ',' {
				i = skipSpace(data, i+1)
			}
		}
	}
	end := skipValue(data, i)
	return "", end
}

// badInObject walks the object at data[i]. At the top (top true) the fields are named by their keys alone and only
// data is walked into; inside, by path.key.
func badInObject(data []byte, i int, path string, top bool) (string, int) {
	i = skipSpace(data, i+1)
	for {
		if i >= len(data) {
			return "", -1
		}
		if data[i] == '}' {
			return "", i + 1
		}
		if data[i] != '"' {
			return "", -1
		}
		end := skipString(data, i)
		if end < 0 {
			return "", -1
		}
		key := data[i+1 : end-1]
		name := strings.ToValidUTF8(string(key), "\uFFFD")
		field := name
		if !top {
			field = path + "." + name
		}
		if badString(data[i:end]) {
			return field, end
		}
		i = skipSpace(data, end)
		if i >= len(data) || data[i] != ':' {
			return "", -1
		}
		i = skipSpace(data, i+1)
		var p string
		if top && name != "data" {
			vend := skipValue(data, i)
			if vend > i && badString(data[i:vend]) {
				return field, vend
			}
			i = vend
		} else {
			p, i = badInValue(data, i, field)
			if p != "" {
				return p, i
			}
		}
		if i < 0 {
			return "", -1
		}
		i = skipSpace(data, i)
		if i < len(data) && data[i] == ',' {
			i = skipSpace(data, i+1)
		}
	}
}
