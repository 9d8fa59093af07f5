package definition

import (
	"strconv"
	"unicode/utf8"
)

// validName reports whether s matches namePattern; ids, types and the
// definition's name share the format.
func validName(s string) bool { return ValidName(s) }

// ValidName reports whether s may name a workflow, task, task type or
// tenant: [A-Za-z0-9_.-]{1,64}, and not "." or "..", which URLs treat as
// path steps.
func ValidName(s string) bool {
	if len(s) == 0 || len(s) > MaxIDLength || s == "." || s == ".." {
		return false
	}
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '_', c == '.', c == '-':
		default:
			return false
		}
	}
	return true
}

// nameProblem returns what is wrong with a name, id or type, or "".
func nameProblem(s string) string {
	switch {
	case s == "":
		return "required"
	case s == "." || s == "..":
		return "must not be . or .. (they are path steps in URLs)"
	case !validName(s):
		return "must match " + namePattern + ", got " + quote(s)
	}
	return ""
}

// taskLabel names task i in problems: its id, or "tasks[i]" when the id is empty or invalid.
func taskLabel(i int, id string) string {
	if validName(id) {
		return id
	}
	return "tasks[" + strconv.Itoa(i) + "]"
}

// truncate shortens s to about maxQuoted bytes, on a rune boundary.
func truncate(s string) string {
	if len(s) <= maxQuoted {
		return s
	}
	cut := maxQuoted
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "..."
}

// quote returns s, shortened, as a Go string literal for a message.
func quote(s string) string { return strconv.Quote(truncate(s)) }
