package event

import "encoding/json"

// forEachKey calls f with each top-level key of the JSON object in data, in order, and returns f's first error. It
// reads only as far as it understands the input: anything that is not a well-formed object ends the walk quietly, and
// the JSON decoder then reports the syntax error with its position.
func forEachKey(data []byte, f func(key string) error) error {
	i := skipSpace(data, 0)
	if i >= len(data) || data[i] != '{' {
		return nil
	}
	i++
	for {
		i = skipSpace(data, i)
		if i >= len(data) || data[i] != '"' {
			return nil // '}' ends the object; anything else is the decoder's to report
		}
		end := skipString(data, i)
		if end < 0 {
			return nil
		}
		key := data[i+1 : end-1]
		for _, c := range key {
			if c == '\\' { // an escaped key: unescape it as JSON does
				var k string
				if json.Unmarshal(data[i:end], &k) != nil {
					return nil
				}
				key = []byte(k)
				break
			}
		}
		if err := f(string(key)); err != nil {
			return err
		}
		i = skipSpace(data, end)
		if i >= len(data) || data[i] != ':' {
			return nil
		}
		if i = skipValue(data, skipSpace(data, i+1)); i < 0 {
			return nil
		}
		if i = skipSpace(data, i); i >= len(data) || data[i] != ',' {
			return nil
		}
		i++
	}
}

func skipSpace(data []byte, i int) int {
	for i < len(data) && (data[i] == ' ' || data[i] == '\t' || data[i] == '\n' || data[i] == '\r') {
		i++
	}
	return i
}

// skipString returns the index after the JSON string starting at data[i] (a quote), or -1.
func skipString(data []byte, i int) int {
	for j := i + 1; j < len(data); j++ {
		switch data[j] {
		case '\\':
			j++
		case '"':
			return j + 1
		}
	}
	return -1
}

// skipValue returns the index after the JSON value starting at data[i], or -1. Nested objects and arrays are skipped
// by depth; scalars run to the next delimiter.
func skipValue(data []byte, i int) int {
	if i >= len(data) {
		return -1
	}
	switch data[i] {
	case '"':
		return skipString(data, i)
	case '{', '[':
		depth := 0
		for j := i; j < len(data); j++ {
			switch data[j] {
			case '"':
				if j = skipString(data, j); j < 0 {
					return -1
				}
				j--
			case '{', '[':
				depth++
			case '}', ']':
				if depth--; depth == 0 {
					return j + 1
				}
			}
		}
		return -1
	}
	j := i
	for j < len(data) && data[j] != ',' && data[j] != '}' && data[j] != ']' && data[j] != ' ' &&
		data[j] != '\t' && data[j] != '\n' && data[j] != '\r' {
		j++
	}
	if j == i {
		return -1
	}
	return j
}
