// Package retention removes finished runs older than their tenant's
// retention from the live database: each goes first to a compressed NDJSON
// archive (one file per tenant and day the runs ended, with every event and
// its hash), then, in one transaction, out of the live tables, leaving a
// tombstone and the skeleton of its log (engine.RetentionStore). It also
// checks archives: `orchestrator archive verify FILE`.
package retention

import (
	"bufio"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"

	"github.com/orchestrator/orchestrator/engine"
)

// MaxRecordBytes bounds one line of an archive when it is read back: a run
// records at most MaxRunBytes of payload, with the encoding around it.
const MaxRecordBytes = 2*engine.DefaultMaxRunBytes + 16<<20

// Record is one run in an archive: its row, its definition, its tasks and
// every event of its log, with their hashes.
type Record struct {
	Run        engine.Run      `json:"run"`
	LastHash   string          `json:"last_hash"`
	Definition json.RawMessage `json:"definition"`
	Tasks      []engine.Task   `json:"tasks"`
	Events     []engine.Event  `json:"events"`
}

// Check verifies a record on its own: its events number 1..n and chain,
// and folding them through the state machines gives the run's final state,
// last seq and hash.
func (r *Record) Check() error {
	if err := engine.VerifyChain(r.Events); err != nil {
		return fmt.Errorf("hash chain: %w", err)
	}
	if n := len(r.Events); n == 0 || int64(n) != r.Run.LastSeq || r.Events[n-1].Hash != r.LastHash {
		return fmt.Errorf("the log has %d events, the run says %d ending in %.12s", len(r.Events), r.Run.LastSeq, r.LastHash)
	}
	plan, err := engine.CompileStored(r.Definition)
	if err != nil {
		return fmt.Errorf("definition %s v%d: %w", r.Run.Workflow, r.Run.Version, err)
	}
	v, err := engine.Replay(plan, r.Events)
	if err != nil {
		return fmt.Errorf("replay: %w", err)
	}
	if v.Run.State != r.Run.State || !v.Run.State.Terminal() {
		return fmt.Errorf("the log folds to state %s, the run says %s", v.Run.State, r.Run.State)
	}
	if len(v.Tasks) != len(r.Tasks) {
		return fmt.Errorf("the log folds to %d tasks, the record has %d", len(v.Tasks), len(r.Tasks))
	}
	for i := range r.Tasks {
		if w := v.Task(r.Tasks[i].TaskID); w == nil || w.State != r.Tasks[i].State || w.Attempt != r.Tasks[i].Attempt {
			return fmt.Errorf("task %s differs from its events", r.Tasks[i].TaskID)
		}
	}
	return nil
}

// Line is one encoded record and the SHA-256 its tombstone holds.
type Line struct {
	Record *Record
	SHA256 string
}

// ReadArchive calls fn for every record of a gzipped NDJSON archive, in
// order, and stops at fn's first error. A line that is not a record is an
// error naming its number.
func ReadArchive(path string, fn func(n int, l *Line) error) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	br := bufio.NewReaderSize(zr, 1<<20)
	for n := 1; ; n++ {
		line, err := readLine(br)
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%s line %d: %w", path, n, err)
		}
		var r Record
		if err := json.Unmarshal(line, &r); err != nil {
			return fmt.Errorf("%s line %d: %w", path, n, err)
		}
		sum := sha256.Sum256(line)
		if err := fn(n, &Line{Record: &r, SHA256: hex.EncodeToString(sum[:])}); err != nil {
			return err
		}
	}
}

// readLine reads one line without its newline, at most MaxRecordBytes.
func readLine(br *bufio.Reader) ([]byte, error) {
	var out []byte
	for {
		chunk, err := br.ReadSlice('\n')
		out = append(out, chunk...)
		if len(out) > MaxRecordBytes {
			return nil, fmt.Errorf("a line longer than %d bytes", MaxRecordBytes)
		}
		switch err {
		case nil:
			return out[:len(out)-1], nil
		case bufio.ErrBufferFull:
			continue
		case io.EOF:
			if len(out) == 0 {
				return nil, io.EOF
			}
			return nil, io.ErrUnexpectedEOF
		default:
			return nil, err
		}
	}
}
