package api

import (
	"encoding/base64"
	"encoding/json"
	"errors"
)

// DefaultMaxPageBytes bounds the encoded items of one page of a list (runs,
// a run's events, a tenant's events): a page that would pass it ends early
// with its token, so that no answer grows with the data its items carry.
const DefaultMaxPageBytes = 1 << 20

// errPageFull ends an event stream that filled a page.
var errPageFull = errors.New("page full")

// pageBuilder collects the encoded items of one page up to a byte bound.
// The first item always goes in, so that every page makes progress.
type pageBuilder struct {
	max   int
	size  int
	items []json.RawMessage
}

func (s *Server) newPage() *pageBuilder {
	return &pageBuilder{max: s.MaxPageBytes, items: []json.RawMessage{}}
}

// add encodes v and keeps it, or reports false, keeping nothing, when the
// page would pass its bound.
func (p *pageBuilder) add(v any) (bool, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return false, err
	}
	if len(p.items) > 0 && p.size+len(b)+1 > p.max {
		return false, nil
	}
	p.size += len(b) + 1 // and a comma
	p.items = append(p.items, b)
	return true, nil
}

// pageToken is the opaque cursor of a list: base64url of JSON.
type pageToken struct {
	CreatedAt string `json:"c,omitempty"`
	ID        string `json:"i,omitempty"`
	AfterID   int64  `json:"e,omitempty"`
	At        string `json:"a,omitempty"` // with a time filter, events are ordered by (at, id)
}

func encodeToken(t pageToken) string {
	b, _ := json.Marshal(t)
	return base64.RawURLEncoding.EncodeToString(b)
}

func decodeToken(s string) (pageToken, error) {
	var t pageToken
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || json.Unmarshal(b, &t) != nil {
		return t, fieldProblem("page_token", "is not a token this API gave out")
	}
	return t, nil
}
