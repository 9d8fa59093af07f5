package engine

// EachMember calls fn with the key and the raw value of every member of the
// JSON object raw, in document order, a repeated key each time it appears.
// It splits raw without decoding it (the validator's scanner), so raw
// should be valid JSON already; it returns fn's error, or an error if raw
// is not an object. It lets other JSON be held to the same strictness as
// definitions (exact keys, none twice) without a second scanner.
func EachMember(raw []byte, fn func(key string, value []byte) error) error {
	return container(raw, '{', fn)
}

// EachElement calls fn with every element of the JSON array raw, like
// EachMember.
func EachElement(raw []byte, fn func(value []byte) error) error {
	return container(raw, '[', func(_ string, value []byte) error { return fn(value) })
}
