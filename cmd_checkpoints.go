package main

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
	"time"

	"github.com/orchestrator/orchestrator/engine"
	"github.com/orchestrator/orchestrator/store"
)

const (
	checkpointsUsage = "checkpoints pubkey|create|export FILE|verify FILE [--pubkey KEY]: signed checkpoints of every tenant's log"
	// defaultCheckpointInterval is how often a server signs checkpoints.
	defaultCheckpointInterval = time.Hour
	// checkpointKeyName is the key's file beside the database unless
	// CHECKPOINT_KEY_FILE names another.
	checkpointKeyName = "checkpoint.key"
)

// checkpointKeyFlag declares the setting of the signing key's file on fs.
func checkpointKeyFlag(fs *flag.FlagSet, to *string) {
	fs.StringVar(to, "checkpoint-key-file", os.Getenv("CHECKPOINT_KEY_FILE"),
		"Ed25519 key that signs checkpoints (PKCS#8 PEM), created with mode 0600 when absent; default "+checkpointKeyName+" beside the database (env CHECKPOINT_KEY_FILE)")
}

// checkpointKeyPath is the key file the settings name.
func checkpointKeyPath(c *config) string { return c.besideDatabase(c.checkpointKey, checkpointKeyName) }

// loadKey reads the Ed25519 private key at path. A key that others than its
// owner may read is refused: whoever reads it can sign checkpoints.
func loadKey(path string) (ed25519.PrivateKey, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("checkpoint key: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("checkpoint key %s: mode %04o lets others read it: chmod 600 it", path, fi.Mode().Perm())
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("checkpoint key: %w", err)
	}
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("checkpoint key %s: want a PEM block of type PRIVATE KEY", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("checkpoint key %s: %w", path, err)
	}
	key, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("checkpoint key %s: want an Ed25519 key, not %T", path, k)
	}
	return key, nil
}

// loadOrCreateKey reads the key at path, or creates one there (mode 0600)
// when there is none; created says which.
func loadOrCreateKey(path string) (key ed25519.PrivateKey, created bool, err error) {
	if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
		key, err := loadKey(path)
		return key, false, err
	}
	_, key, err = ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, false, fmt.Errorf("checkpoint key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, false, fmt.Errorf("checkpoint key: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) { // another process created it meanwhile
		key, err := loadKey(path)
		return key, false, err
	}
	if err != nil {
		return nil, false, fmt.Errorf("checkpoint key: %w", err)
	}
	err = pem.Encode(f, &pem.Block{Type: "PRIVATE KEY", Bytes: der})
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		return nil, false, fmt.Errorf("checkpoint key: %w", err)
	}
	return key, true, nil
}

// startCheckpoints starts the server's periodic checkpoints, or returns nil
// when CHECKPOINT_INTERVAL is 0. The public key is logged at every start.
func startCheckpoints(c *config, db *store.DB) (*engine.Checkpointer, error) {
	if c.checkpointsEvery == 0 {
		c.logger.Info("checkpoints off")
		return nil, nil
	}
	path := checkpointKeyPath(c)
	key, created, err := loadOrCreateKey(path)
	if err != nil {
		return nil, err
	}
	cp, err := engine.NewCheckpointer(engine.CheckpointerConfig{Store: db, Key: key, Interval: c.checkpointsEvery, Logger: c.logger})
	if err != nil {
		return nil, err
	}
	c.logger.Info("checkpoints", "public_key", engine.EncodePublicKey(cp.PublicKey()), "key_file", path,
		"key_created", created, "interval", c.checkpointsEvery.String())
	cp.Start()
	return cp, nil
}

// checkpointsCmd runs the checkpoints subcommands.
func checkpointsCmd(fs *flag.FlagSet) func(context.Context, *config, []string, io.Writer, io.Writer) int {
	var trusted []ed25519.PublicKey
	fs.Func("pubkey", "verify: a public key whose signatures are trusted, as `checkpoints pubkey` prints it, or @FILE holding one (repeatable)", func(s string) error {
		if name, ok := strings.CutPrefix(s, "@"); ok {
			b, err := os.ReadFile(name)
			if err != nil {
				return err
			}
			s = string(b)
		}
		k, err := engine.ParsePublicKey(s)
		if err == nil {
			trusted = append(trusted, k)
		}
		return err
	})
	var keyFile string
	checkpointKeyFlag(fs, &keyFile)
	return func(ctx context.Context, c *config, args []string, stdout, stderr io.Writer) int {
		c.checkpointKey = keyFile
		fail := func(err error) int {
			fmt.Fprintln(stderr, "orchestrator:", err)
			return 1
		}
		sub := ""
		if len(args) > 0 {
			sub, args = args[0], args[1:]
		}
		switch {
		case sub == "pubkey" && len(args) == 0:
			key, err := loadKey(checkpointKeyPath(c))
			if err != nil {
				return fail(err)
			}
			fmt.Fprintln(stdout, engine.EncodePublicKey(key.Public().(ed25519.PublicKey)))
			return 0
		case sub == "create" && len(args) == 0:
			return createCheckpoints(ctx, c, stdout, stderr)
		case sub == "export" && len(args) == 1:
			return exportCheckpoints(ctx, c, args[0], stdout, stderr)
		case sub == "verify" && len(args) == 1:
			return verifyCheckpoints(ctx, c, args[0], trusted, stdout, stderr)
		}
		return usageError(stderr, checkpointsUsage, fmt.Sprintf("unknown subcommand or arguments %q", strings.Join(append([]string{sub}, args...), " ")))
	}
}

// openForWrite opens the configured database to append to it; like the
// commands that only read it, it neither creates nor migrates it.
func openForWrite(ctx context.Context, c *config) (*store.DB, error) {
	ro, err := openReadOnly(ctx, c)
	if err != nil {
		return nil, err
	}
	ro.Close()
	return store.Open(ctx, c.databasePath, store.Options{Logger: c.logger})
}

// createCheckpoints signs a round of checkpoints now, creating the key when
// there is none.
func createCheckpoints(ctx context.Context, c *config, stdout, stderr io.Writer) int {
	path := checkpointKeyPath(c)
	key, created, err := loadOrCreateKey(path)
	if err != nil {
		fmt.Fprintln(stderr, "orchestrator:", err)
		return 1
	}
	if created {
		fmt.Fprintf(stdout, "created checkpoint key %s, public key %s\n", path, engine.EncodePublicKey(key.Public().(ed25519.PublicKey)))
	}
	db, err := openForWrite(ctx, c)
	if err != nil {
		fmt.Fprintln(stderr, "orchestrator:", err)
		return 1
	}
	defer db.Close()
	cpr, err := engine.NewCheckpointer(engine.CheckpointerConfig{Store: db, Key: key})
	if err != nil {
		fmt.Fprintln(stderr, "orchestrator:", err)
		return 1
	}
	cps, err := cpr.Checkpoint(ctx)
	for _, cp := range cps {
		fmt.Fprintf(stdout, "tenant %s checkpoint %d: up to event %d, %d events of %d runs\n", cp.TenantID, cp.Seq, cp.HeadEventID, cp.Events, cp.Runs)
	}
	if err != nil {
		fmt.Fprintln(stderr, "orchestrator:", err)
		return 1
	}
	fmt.Fprintf(stdout, "%d checkpoints signed\n", len(cps))
	return 0
}

// exportCheckpoints writes every stored checkpoint, one JSON object a line,
// to a new file (or - for stdout).
func exportCheckpoints(ctx context.Context, c *config, path string, stdout, stderr io.Writer) int {
	fail := func(err error) int {
		fmt.Fprintln(stderr, "orchestrator:", err)
		return 1
	}
	db, err := openReadOnly(ctx, c)
	if err != nil {
		return fail(err)
	}
	defer db.Close()
	out := stdout
	var f *os.File
	if path != "-" {
		if f, err = os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644); err != nil {
			return fail(err)
		}
		defer f.Close()
		out = f
	}
	w := bufio.NewWriter(out)
	enc := json.NewEncoder(w)
	n := 0
	err = db.Checkpoints(ctx, func(cp *engine.Checkpoint) error {
		n++
		return enc.Encode(cp)
	})
	if err == nil {
		err = w.Flush()
	}
	if err == nil && f != nil {
		err = f.Sync()
	}
	if err != nil {
		if f != nil {
			os.Remove(path)
		}
		return fail(err)
	}
	if f != nil {
		fmt.Fprintf(stdout, "exported %d checkpoints to %s\n", n, path)
	}
	return 0
}

// verifyCheckpoints checks the database against the checkpoints of a file
// written by export; the exit code is 1 when anything differs.
func verifyCheckpoints(ctx context.Context, c *config, path string, trusted []ed25519.PublicKey, stdout, stderr io.Writer) int {
	fail := func(err error) int {
		fmt.Fprintln(stderr, "orchestrator:", err)
		return 1
	}
	f, err := os.Open(path)
	if err != nil {
		return fail(err)
	}
	defer f.Close()
	db, err := openReadOnly(ctx, c)
	if err != nil {
		return fail(err)
	}
	defer db.Close()
	v := engine.NewCheckpointVerifier(db, trusted)
	dec := json.NewDecoder(bufio.NewReader(f))
	dec.DisallowUnknownFields()
	keys := map[string]bool{}
	var found []engine.CheckpointMismatch
	for line := 1; ; line++ {
		var cp engine.Checkpoint
		if err := dec.Decode(&cp); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return fail(fmt.Errorf("%s: checkpoint %d: %w", path, line, err))
		}
		keys[cp.PublicKey] = true
		m, err := v.Check(ctx, &cp)
		if err != nil {
			return fail(err)
		}
		for i := range m {
			fmt.Fprintf(stdout, "MISMATCH %s\n", m[i].String())
		}
		found = append(found, m...)
	}
	n, tenants, heads := v.Checked()
	if len(trusted) == 0 {
		fmt.Fprintf(stdout, "signatures checked against the keys the file names (%d), not against a trusted one: pass --pubkey to check who signed\n", len(keys))
	}
	fmt.Fprintf(stdout, "checked %d checkpoints of %d tenants (%d run heads): %d differences\n", n, tenants, heads, len(found))
	for _, m := range found {
		if m.RunID != "" {
			fmt.Fprintf(stdout, "the first run whose history no longer matches: %s (tenant %s)\n", m.RunID, m.TenantID)
			break
		}
	}
	if len(found) > 0 {
		return 1
	}
	return 0
}
