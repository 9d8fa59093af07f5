package engine

import "fmt"

// MaxJSONDepth bounds how deeply objects and arrays may nest in a definition,
// a run's input and a task's output: far below what the database accepts
// (SQLite's json functions refuse 1,000 levels), so that a value the engine
// accepted can always be stored, and recursion over it stays shallow.
const MaxJSONDepth = 64

// CheckJSONDepth returns an error saying how deep raw nests when it nests
// deeper than MaxJSONDepth. raw must be valid JSON.
func CheckJSONDepth(raw []byte) error {
	if d := jsonDepth(raw, MaxJSONDepth); d > MaxJSONDepth {
		return fmt.Errorf("nests objects and arrays more than %d levels deep, the limit", MaxJSONDepth)
	}
	return nil
}

// jsonDepth returns the deepest nesting of objects and arrays in raw, or
// stop+1 as soon as it passes stop.
func jsonDepth(raw []byte, stop int) int {
	depth, deepest := 0, 0
	inString := false
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		if inString {
			switch c {
			case '\\':
				i++
			case '"':
				inString = false
			}
			continue
		}
		switch c {
		case '"':
			inString = true
		case '{', '[':
			depth++
			if depth > deepest {
				deepest = depth
				if deepest > stop {
					return deepest
				}
			}
		case '}', ']':
			depth--
		}
	}
	return deepest
}
