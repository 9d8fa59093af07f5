package api

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/julienschmidt/httprouter"

	"github.com/orchestrator/orchestrator/api/wire"
	"github.com/orchestrator/orchestrator/engine"
)

// The operations API for a running server (admin keys): a backup of the
// live database into the server's backup directory, and the signed
// checkpoints of every tenant's log.

// backupTimeout bounds one backup, copy and checks included.
const backupTimeout = 30 * time.Minute

func (s *Server) operationsRoutes() []route {
	return []route{
		{"POST", "/api/v1/admin/backup", PermServerBackup, "backup", s.backup, 0},
		{"GET", "/api/v1/admin/checkpoints", PermServerCheckpoint, "list", s.listCheckpoints, 0},
		{"POST", "/api/v1/admin/checkpoints", PermServerCheckpoint, "create", s.createCheckpoints, 0},
		{"GET", "/api/v1/admin/checkpoints/export", PermServerCheckpoint, "export", s.exportCheckpoints, 0},
	}
}

// backup serves POST /api/v1/admin/backup: a consistent copy of the live
// database, written to a new file in BackupDir whose name the server
// chooses (the caller cannot name a path on the server), checked, and
// described. One backup runs at a time; another asked meanwhile is 409.
func (s *Server) backup(w http.ResponseWriter, r *http.Request, _ httprouter.Params) error {
	if err := onlyParams(r.URL.Query()); err != nil {
		return err
	}
	if s.Backups == nil || s.BackupDir == "" {
		return newProblem(http.StatusNotFound, wire.CodeNotFound, "this server takes no backups (no backup directory)")
	}
	if !s.backingUp.CompareAndSwap(false, true) {
		return newProblem(http.StatusConflict, wire.CodeBackupInProgress, "another backup is being taken")
	}
	defer s.backingUp.Store(false)
	if err := os.MkdirAll(s.BackupDir, 0o700); err != nil {
		return err
	}
	// The copy outlives a client that goes away: a half-taken backup is
	// worth less than a finished one nobody waited for.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), backupTimeout)
	defer cancel()
	s.extendWrite(http.NewResponseController(w), backupTimeout)
	name := "orchestrator-" + time.Now().UTC().Format("20060102T150405.000000Z") + ".db"
	rep, err := s.Backups.Backup(ctx, filepath.Join(s.BackupDir, name))
	if err != nil {
		return err
	}
	s.Logger.Info("backup taken", "path", rep.Path, "bytes", rep.Summary.Bytes, "ok", rep.Check.OK(),
		"by", PrincipalFrom(r.Context()).Actor())
	writeJSON(w, http.StatusCreated, wireBackup(rep))
	return nil
}

// checkpointer returns the server's Checkpointer, or the problem saying
// there is none.
func (s *Server) checkpointer() (*engine.Checkpointer, error) {
	if s.Checkpointer == nil {
		return nil, newProblem(http.StatusConflict, wire.CodeCheckpointsOff, "this server signs no checkpoints (CHECKPOINT_INTERVAL=0)")
	}
	return s.Checkpointer, nil
}

// listCheckpoints serves GET /api/v1/admin/checkpoints: each tenant's
// latest checkpoint.
func (s *Server) listCheckpoints(w http.ResponseWriter, r *http.Request, _ httprouter.Params) error {
	if err := onlyParams(r.URL.Query()); err != nil {
		return err
	}
	c, err := s.checkpointer()
	if err != nil {
		return err
	}
	cps, err := c.Latest(r.Context())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, wireCheckpoints(c, cps))
	return nil
}

// createCheckpoints serves POST /api/v1/admin/checkpoints: a round of
// checkpoints now, for every tenant whose log grew since its last one.
func (s *Server) createCheckpoints(w http.ResponseWriter, r *http.Request, _ httprouter.Params) error {
	if err := onlyParams(r.URL.Query()); err != nil {
		return err
	}
	c, err := s.checkpointer()
	if err != nil {
		return err
	}
	cps, err := c.Checkpoint(r.Context())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, wireCheckpoints(c, cps))
	return nil
}

// exportCheckpoints serves GET /api/v1/admin/checkpoints/export: every
// stored checkpoint with its heads, one JSON object a line, in the order
// they were appended: the file `orchestrator checkpoints verify` checks a
// database against, to be kept where whoever can write the database cannot.
func (s *Server) exportCheckpoints(w http.ResponseWriter, r *http.Request, _ httprouter.Params) error {
	if err := onlyParams(r.URL.Query()); err != nil {
		return err
	}
	if s.Checkpoints == nil {
		return newProblem(http.StatusConflict, wire.CodeCheckpointsOff, "this server keeps no checkpoints")
	}
	return s.streamNDJSON(w, "checkpoint export", 100, func(emit func(any) error) error {
		return s.Checkpoints.Checkpoints(r.Context(), func(cp *engine.Checkpoint) error { return emit(cp) })
	})
}

func wireBackup(rep *engine.BackupReport) wire.BackupReport {
	sum := rep.Summary
	out := wire.BackupReport{Path: rep.Path, Summary: wire.DatabaseSummary{SchemaVersion: sum.SchemaVersion, Bytes: sum.Bytes,
		Tenants: sum.Tenants, Definitions: sum.Definitions, Runs: map[string]int{}, Events: sum.Events,
		LastEventID: sum.LastEventID, Checkpoints: sum.Checkpoints},
		Check: wire.CopyCheck{OK: rep.Check.OK(), Integrity: rep.Check.Integrity, RunsChecked: rep.Check.RunsChecked}}
	for st, n := range sum.Runs {
		out.Summary.Runs[string(st)] = n
	}
	for _, p := range rep.Check.RunsDiffer {
		out.Check.RunsDiffer = append(out.Check.RunsDiffer, wire.RunProblem{RunID: p.RunID, Problem: p.Problem})
	}
	return out
}

// wireCheckpoints leaves out the checkpoints' heads: only the export has
// them.
func wireCheckpoints(c *engine.Checkpointer, cps []engine.Checkpoint) wire.Checkpoints {
	out := wire.Checkpoints{PublicKey: engine.EncodePublicKey(c.PublicKey()), Checkpoints: make([]wire.Checkpoint, len(cps))}
	for i, cp := range cps {
		out.Checkpoints[i] = wire.Checkpoint{TenantID: cp.TenantID, Seq: cp.Seq, At: cp.At, FromEventID: cp.FromEventID,
			HeadEventID: cp.HeadEventID, Events: cp.Events, Runs: cp.Runs, HeadsDigest: cp.HeadsDigest,
			PrevDigest: cp.PrevDigest, Digest: cp.Digest, PublicKey: cp.PublicKey, Signature: cp.Signature}
	}
	return out
}
